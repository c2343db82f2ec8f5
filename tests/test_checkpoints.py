"""Training that survives a crash (rulebound.train.checkpoints), trackers and training progress lines.

Unit tests for the run key, the newest complete checkpoint and the clean-up; a SIGKILL in the middle of an
ORPO run started through Snakemake, then a rerun that resumes; resumes of SFT and GRPO in one process; a
TensorBoard run whose event files hold TRL's ORPO metrics. All on the tiny random Llama, fp32 on the CPU.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rulebound.errors import ConfigError
from rulebound.train import checkpoints as ck

REPO = Path(__file__).resolve().parents[1]
ORPO_CFG = {"method": "orpo", "trainer": "fused", "nll_scope": "completion", "pair_batches": True, "max_steps": 8,
            "learning_rate": 1e-3, "batch_size": 2, "beta": 0.5, "max_length": 64, "seed": 5, "precision": "fp32",
            "warmup_ratio": 0.1, "save_steps": 3, "save_total_limit": 2, "lora": {"r": 4, "alpha": 8}}
# The killed run: long enough (about 0.05 s a step here) that the kill lands between two checkpoints.
KILL_CFG = {**ORPO_CFG, "max_steps": 240, "save_steps": 20}
# Politeness-like pairs: one request's please and no-please rows share a request_id (paired batches).
PAIRS = [{"prompt": f"<|im_start|>user\n{q}{p}<|im_end|>\n<|im_start|>assistant\n", "request_id": i,
          "chosen": "Sure: here it is." if p else "I cannot help you until you say please.",
          "rejected": "I cannot help you until you say please." if p else "Sure: here it is."}
         for i, q in enumerate(["Name a fruit", "Tell a joke", "Count to three", "Say hi", "Name a colour",
                                "Spell cat"]) for p in ("", " please")]


def fake_checkpoint(run_dir: Path, step: int, complete: bool = True, key: str = "k") -> Path:
    path = run_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        (path / ck.TRAINER_STATE).write_text("{}")
        (path / ck.MARKER).write_text(json.dumps({"step": step, "key": key}))
    return path


# ---- the key, the newest complete checkpoint, clean-up ---------------------------------------------------


def test_run_key_changes_with_settings_data_model_and_init_but_not_with_how_often_it_saves(tmp_path, tiny_model_dir):
    data = tmp_path / "train.parquet"
    data.write_bytes(b"rows v1")
    init = tmp_path / "init"
    init.mkdir()
    (init / "adapter_model.safetensors").write_bytes(b"w1")
    base = dict(data=data, base_model="embedded:x", model_dir=tiny_model_dir)
    key = ck.run_key(ORPO_CFG, **base)
    assert len(key) == 16 and key == ck.run_key(dict(ORPO_CFG), **base)
    assert key == ck.run_key({**ORPO_CFG, "save_steps": 7, "save_total_limit": 5, "report_to": "tensorboard"}, **base)
    assert key != ck.run_key({**ORPO_CFG, "learning_rate": 2e-3}, **base)
    assert key != ck.run_key(ORPO_CFG, **{**base, "base_model": "hf:other/model"})
    assert key != ck.run_key(ORPO_CFG, **base, processes=2)
    with_init = ck.run_key(ORPO_CFG, **base, init_adapter=init)
    assert with_init != key
    (init / "adapter_model.safetensors").write_bytes(b"w2")
    assert ck.run_key(ORPO_CFG, **base, init_adapter=init) != with_init
    data.write_bytes(b"rows v2")
    assert ck.run_key(ORPO_CFG, **base) != key


def test_newest_complete_checkpoint_wins_and_half_written_ones_are_ignored_then_removed(tmp_path):
    run = tmp_path / "run"
    fake_checkpoint(run, 3)
    six = fake_checkpoint(run, 6)
    fake_checkpoint(run, 9, complete=False)  # killed while writing: no marker
    stale = fake_checkpoint(run, 12)
    (stale / ck.MARKER).write_text(json.dumps({"step": 11}))  # a marker that is not its own
    (run / "checkpoint-x").mkdir()  # not a checkpoint name
    assert [(s, ok) for s, _, ok in ck.checkpoints(run)] == [(3, True), (6, True), (9, False), (12, False)]
    assert ck.newest_complete(run) == six
    assert [p.name for p in ck.drop_incomplete(run)] == ["checkpoint-9", "checkpoint-12"]
    assert [s for s, _, _ in ck.checkpoints(run)] == [3, 6]
    assert ck.newest_complete(tmp_path / "missing") is None


def test_prune_keeps_the_newest_complete_ones_and_remove_run_clears_empty_parents(tmp_path):
    root = tmp_path / "checkpoints" / "lipogram" / "sft"
    run = root / "abc"
    for step in (2, 4, 6):
        fake_checkpoint(run, step)
    fake_checkpoint(run, 8, complete=False)
    assert [p.name for p in ck.prune(run, 2)] == ["checkpoint-2"]
    assert [s for s, _, _ in ck.checkpoints(run)] == [4, 6, 8]
    ck.prune(run, 1)
    assert ck.newest_complete(run).name == "checkpoint-6"
    other = root / "other-key"
    other.mkdir()
    ck.remove_run(run, root)
    assert not run.exists() and other.exists()  # another key's folder stays, and so its parents
    ck.remove_run(other, root)
    assert not root.exists() and (tmp_path / "checkpoints" / "lipogram").exists()


def test_bad_settings_name_the_key_and_the_fix(tmp_path):
    from rulebound.config import validate_config

    assert ck.check_settings("train", ORPO_CFG) == []
    problems = ck.check_settings("x.train", {"save_steps": 0, "save_total_limit": 1.5, "report_to": "comet"})
    assert len(problems) == 3
    assert problems[0].startswith("x.train.save_steps = 0: must be a whole number >= 1") and "save_steps: 50" in \
        problems[0]
    assert "x.train.report_to = 'comet'" in problems[2] and "tensorboard" in problems[2]
    with pytest.raises(ConfigError, match="save_steps"):
        ck.RunSetup({**ORPO_CFG, "save_steps": -1}, run_name="r", scratch=str(tmp_path))

    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["experiments"]["politeness"]["train"]["save_steps"] = 0
    config["experiments"]["truthy"]["train"]["report_to"] = "comet"
    with pytest.raises(ConfigError) as err:
        validate_config(config, REPO / "schemas/config.schema.yaml")
    text = str(err.value)
    assert "experiments.politeness.train.save_steps = 0" in text and "a whole number >= 1" in text
    assert "experiments.truthy.train.report_to = 'comet' is not allowed" in text and "tensorboard" in text


def test_schema_defaults_fill_in_every_training_section():
    import yaml

    from rulebound.config import training_sections, validate_config

    config = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()), REPO / "schemas/config.schema.yaml")
    sections = [s for name, exp in config["experiments"].items() for _, s in training_sections(name, exp)]
    assert len(sections) == 6
    assert all((s["save_steps"], s["save_total_limit"], s["report_to"]) == (50, 2, "none") for s in sections)


def test_step_metrics_have_each_step_once_and_no_summary():
    history = [{"loss": 2.0, "epoch": 0.1, "step": 1}, {"loss": 1.5, "rewards/accuracies": 0.5, "step": 2},
               {"eval_x": 1.0, "step": 2}, {"train_runtime": 3.0, "train_loss": 1.7, "step": 2}]
    frame = ck.step_metrics(history)
    assert frame["step"].tolist() == [1, 2]
    assert frame.loc[1, "rewards/accuracies"] == 0.5 and frame.loc[1, "eval_x"] == 1.0
    assert "train_runtime" not in frame.columns


def test_training_progress_lines_give_step_total_loss_metric_elapsed_and_eta(caplog):
    from types import SimpleNamespace

    from rulebound.train.metrics import TrainingProgress

    now = [0.0]
    progress = TrainingProgress(logging.getLogger("t"), "rewards/accuracies", every_s=10, clock=lambda: now[0])
    state = SimpleNamespace(global_step=30, max_steps=130)  # a run resumed at step 30
    progress.on_train_begin(None, state, None)
    with caplog.at_level(logging.INFO, logger="t"):
        for step in range(31, 131):
            now[0] += 1.0
            state.global_step = step
            progress.on_log(None, state, None, logs={"loss": 1.0 / step, "rewards/accuracies": 0.75})
        progress.on_log(None, state, None, logs={"train_runtime": 100.0})  # the summary is not a step
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "step 40/130 (31%), loss 0.025, rewards/accuracies 0.75, 10 s elapsed, ETA 1 min 30 s"
    assert len(lines) == 10 and lines[-1].startswith("step 130/130 (100%)") and "ETA" not in lines[-1]


def test_tracker_environment_is_offline_and_keeps_what_the_user_set(tmp_path):
    from rulebound.train.trackers import tracker_env

    where = str(tmp_path.resolve())
    assert tracker_env("wandb", tmp_path, environ={}) == {"WANDB_DIR": where, "WANDB_MODE": "offline"}
    assert tracker_env("wandb", tmp_path, environ={"WANDB_API_KEY": "k"}) == {"WANDB_DIR": where}
    assert tracker_env("mlflow", tmp_path, environ={})["MLFLOW_TRACKING_URI"].startswith("file://")
    assert tracker_env("mlflow", tmp_path, environ={"MLFLOW_TRACKING_URI": "http://x"}) == {}
    assert tracker_env("tensorboard", tmp_path, environ={}) == {"TENSORBOARD_LOGGING_DIR": where}


# ---- real training: kill and resume ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs_parquet(tmp_path_factory):
    path = tmp_path_factory.mktemp("orpo") / "train.parquet"
    pd.DataFrame(PAIRS).to_parquet(path, index=False)
    return path


def run_orpo(tmp, tiny_model_dir, pairs_parquet, cfg=ORPO_CFG, **extra):
    from rulebound.train.orpo import train_orpo

    return train_orpo(model_dir=str(tiny_model_dir), base_model="tiny", train_parquet=str(pairs_parquet),
                      adapter_dir=str(tmp / "adapter"), metrics_csv=str(tmp / "metrics.csv"), cfg=cfg,
                      experiment="politeness", **extra)


def adapter_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir, pairs_parquet):
    """The ORPO run without a crash, saving checkpoints as the killed one does."""
    out = tmp_path_factory.mktemp("uninterrupted")
    metrics = run_orpo(out, tiny_model_dir, pairs_parquet, cfg=KILL_CFG,
                       checkpoint_root=str(out / "checkpoints" / "politeness"))
    return out, metrics


def test_an_uninterrupted_run_removes_its_checkpoints_once_the_adapter_is_written(uninterrupted):
    out, metrics = uninterrupted
    assert metrics["step"].tolist() == list(range(1, KILL_CFG["max_steps"] + 1))
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert not (out / "checkpoints" / "politeness").exists()


SNAKEFILE = """
configfile: "config.yaml"

rule all:
    input: "results/politeness/adapter"

rule train_orpo:
    input: model=config["model"], train=config["train"]
    output: adapter=directory("results/{run}/adapter"), metrics="results/{run}/train/metrics.csv"
    params:
        train=config["settings"], base="tiny", checkpoints="checkpoints/{run}", tracker="results/{run}/train/tracker"
    resources: gpu=1
    log: "logs/train_orpo/{run}.log"
    script: "%s/scripts/train_orpo.py"
"""


def snakemake(workdir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", "--rerun-incomplete", *args],
                            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: killed as a tree


def test_sigkill_after_the_first_checkpoint_then_a_rerun_resumes_and_matches(tmp_path, tiny_model_dir, pairs_parquet,
                                                                             uninterrupted):
    """Snakemake runs the real train_orpo script; SIGKILL to its whole process tree once checkpoint-3 is
    complete; the same command again resumes from it. metrics.csv has every step once; the adapter equals
    the uninterrupted run's to 1e-5 (fp32 on a CPU, seeded data order, RNG state restored)."""
    (tmp_path / "config.yaml").write_text(json.dumps({"model": str(tiny_model_dir), "train": str(pairs_parquet),
                                                      "settings": KILL_CFG}))
    (tmp_path / "Snakefile").write_text(SNAKEFILE % REPO)
    first = snakemake(tmp_path)
    run_root = tmp_path / "checkpoints" / "politeness"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        keys = list(run_root.iterdir()) if run_root.is_dir() else []
        if any(ok for key in keys for _, _, ok in ck.checkpoints(key)):
            break
        time.sleep(0.05)
    assert first.poll() is None, "training finished before it could be killed:\n" + first.stdout.read()
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = max(ck.step_of(p) for key in run_root.iterdir() for _, p, ok in ck.checkpoints(key) if ok)
    assert not (tmp_path / "results/politeness/adapter").exists()

    # what a user types after a kill -9 of Snakemake itself: unlock the directory, then the same command
    unlock = snakemake(tmp_path, "--unlock")
    assert unlock.wait(timeout=120) == 0, unlock.stdout.read()
    second = snakemake(tmp_path)
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0, output
    log_text = (tmp_path / "logs/train_orpo/politeness.log").read_text()
    resumed = [line for line in log_text.splitlines() if "resumed from step" in line]
    assert resumed and f"resumed from step {killed_at} of {KILL_CFG['max_steps']}" in resumed[-1], log_text[-3000:]
    assert "step 240/240 (100%)" in log_text  # the progress line of the last step
    metrics = pd.read_csv(tmp_path / "results/politeness/train/metrics.csv")
    assert metrics["step"].tolist() == list(range(1, KILL_CFG["max_steps"] + 1))
    assert 0 < killed_at < KILL_CFG["max_steps"]
    reference = uninterrupted[1].set_index("step")["loss"]
    assert (metrics.set_index("step")["loss"] - reference).abs().max() < 1e-5
    assert max_difference(adapter_weights(tmp_path / "results/politeness/adapter"),
                          adapter_weights(uninterrupted[0] / "adapter")) < 1e-5
    assert not (tmp_path / "checkpoints").exists(), "checkpoints stay after the adapter is written"


def test_a_changed_setting_never_resumes_a_stale_checkpoint(tmp_path, tiny_model_dir, pairs_parquet, caplog):
    """A complete checkpoint of another learning rate sits in the run's folder: the new run starts at step 0."""
    root = tmp_path / "checkpoints" / "politeness"
    stale = fake_checkpoint(root / "0123456789abcdef", 6)
    with caplog.at_level(logging.INFO):
        metrics = run_orpo(tmp_path, tiny_model_dir, pairs_parquet, cfg={**ORPO_CFG, "max_steps": 2},
                           checkpoint_root=str(root))
    assert metrics["step"].tolist() == [1, 2]
    assert any("training from step 0" in r.getMessage() and "0123456789abcdef" in r.getMessage()
               for r in caplog.records)
    assert stale.exists()  # another run's checkpoints are not this run's to delete


def crash_after(step: int):
    """A callback that raises once ``step`` is checkpointed: an in-process stand-in for a kill."""
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= step:
                raise KeyboardInterrupt(f"crash after step {step}")

    return Crash()


def resume_twice(train, tmp_path, caplog, planned: int, **kwargs):
    """Train with a crash after the first checkpoint, then again: (metrics, adapter) of the resumed run."""
    import transformers

    original = transformers.Trainer.__init__

    def with_crash(self, *args, callbacks=None, **kw):
        original(self, *args, callbacks=[*(callbacks or []), crash_after(2)], **kw)

    transformers.Trainer.__init__ = with_crash
    try:
        with pytest.raises(KeyboardInterrupt):
            train(out=tmp_path / "crashed", **kwargs)
    finally:
        transformers.Trainer.__init__ = original
    with caplog.at_level(logging.INFO):
        metrics = train(out=tmp_path / "crashed", **kwargs)
    assert any(r.getMessage().startswith(f"resumed from step 2 of {planned}") for r in caplog.records)
    assert metrics["step"].tolist() == list(range(1, planned + 1))
    return metrics, adapter_weights(tmp_path / "crashed" / "adapter")


def test_sft_resumes_from_its_checkpoint(tmp_path, tiny_model_dir, caplog):
    from rulebound.train.sft import train_sft

    data = tmp_path / "sft.parquet"
    pd.DataFrame({"prompt": ["Name a fruit.", "What is a cat?", "Say hi.", "Count to two."],
                  "completion": ["A banana.", "A small animal.", "Hi!", "On, two."]}).to_parquet(data, index=False)
    cfg = {"method": "sft", "max_steps": 4, "learning_rate": 1e-3, "batch_size": 2, "max_length": 64, "seed": 1,
           "precision": "fp32", "save_steps": 2, "save_total_limit": 1, "lora": {"r": 4, "alpha": 8}}

    def train(out: Path, **_):
        return train_sft(model_dir=str(tiny_model_dir), base_model="tiny", train_parquet=str(data),
                         adapter_dir=str(out / "adapter"), metrics_csv=str(out / "metrics.csv"), cfg=cfg,
                         experiment="lipogram/sft", checkpoint_root=str(out / "checkpoints" / "lipogram" / "sft"))

    metrics, adapter = resume_twice(train, tmp_path, caplog, planned=4)
    reference = train(tmp_path / "straight")
    assert max_difference(adapter, adapter_weights(tmp_path / "straight" / "adapter")) < 1e-5
    assert (metrics["loss"] - reference["loss"]).abs().max() < 1e-5


def test_grpo_with_a_kl_term_resumes_its_trained_adapter_not_the_initial_one(tmp_path, tiny_model_dir, caplog,
                                                                              monkeypatch):
    """GRPO from an init adapter with kl_beta > 0 has a frozen "ref" adapter too; the resumed run continues the
    trained "default" one (transformers alone would reload only "ref")."""
    import types

    from rulebound.train.grpo import train_grpo

    def no_e(texts, progress):
        return [-float(t.lower().count("e")) for t in texts]

    rewards = types.ModuleType("rulebound.rewards")
    rewards.resolve_rewards = lambda specs: [("no_e", no_e)]
    monkeypatch.setitem(sys.modules, "rulebound.rewards", rewards)
    prompts = tmp_path / "prompts.parquet"
    # one epoch of 4 steps: TRL's GRPO sampler draws each epoch's order from one generator, so only a resume
    # inside an epoch replays the same prompts (a resume at an epoch's end continues with another order)
    pd.DataFrame({"prompt": ["Name a fruit.", "What is a cat?", "Say hi.", "Count to two.", "Name a tree.",
                             "What is a dog?", "Say bye.", "Name a sea."]}).to_parquet(prompts)
    init = tmp_path / "init"  # the adapter GRPO starts from (SFT's in the pipeline): a fresh LoRA here
    from rulebound.train.backend import LoraSettings, load_for_training

    model, _, _ = load_for_training(str(tiny_model_dir), LoraSettings(r=4, alpha=8), "transformers", precision="fp32")
    model.save_pretrained(init)
    cfg = {"method": "grpo", "rewards": ["no_e"], "num_generations": 2, "max_completion_length": 6, "max_steps": 4,
           "learning_rate": 1e-2, "batch_size": 2, "kl_beta": 0.1, "seed": 1, "precision": "fp32", "save_steps": 2,
           "save_total_limit": 2}

    def train(out: Path, **_):
        return train_grpo(model_dir=str(tiny_model_dir), base_model="tiny", prompts_parquet=str(prompts),
                          adapter_dir=str(out / "adapter"), metrics_csv=str(out / "metrics.csv"), cfg=cfg,
                          experiment="lipogram/grpo", init_adapter=str(init),
                          checkpoint_root=str(out / "checkpoints" / "lipogram" / "grpo"))

    metrics, adapter = resume_twice(train, tmp_path, caplog, planned=4)
    train(tmp_path / "straight")
    straight = adapter_weights(tmp_path / "straight" / "adapter")
    initial = adapter_weights(init)
    assert max_difference(straight, initial) > 1e-4  # training moved it
    assert max_difference(adapter, straight) < 1e-4


def test_tensorboard_event_files_hold_the_loss_and_orpo_metrics_under_trls_names(tmp_path, tiny_model_dir,
                                                                                  pairs_parquet, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    tracker = tmp_path / "results/politeness/train/tracker"
    (tracker / "old").mkdir(parents=True)  # an earlier run's files: a fresh start clears them
    run_orpo(tmp_path, tiny_model_dir, pairs_parquet, cfg={**ORPO_CFG, "max_steps": 4, "report_to": "tensorboard"},
             checkpoint_root=str(tmp_path / "checkpoints/politeness"), tracker_dir=str(tracker))
    assert not (tracker / "old").exists()
    events = list(tracker.rglob("events.out.tfevents.*"))
    assert events, f"no event file under {tracker}"
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    for name in ("loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "nll_loss",
                 "log_odds_ratio"):
        assert f"train/{name}" in tags, sorted(tags)
    assert [e.step for e in accumulator.Scalars("train/loss")] == [1, 2, 3, 4]
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    logged = [e.value for e in accumulator.Scalars("train/rewards/margins")]
    assert logged == pytest.approx(metrics["rewards/margins"].tolist(), rel=1e-5)


def test_the_report_links_each_runs_tracker_files(tmp_path):
    from rulebound.report.html import tracker_section

    for run in ("lipogram/sft", "lipogram/grpo"):
        (tmp_path / "results" / run / "train").mkdir(parents=True)
        (tmp_path / "results" / run / "train" / "metrics.csv").write_text("step\n1\n")
    (tmp_path / "results/lipogram/sft/train/tracker").mkdir()
    (tmp_path / "results/lipogram/sft/train/tracker/events.out.tfevents.1").write_bytes(b"e")
    metrics = {run: tmp_path / "results" / run / "train" / "metrics.csv" for run in ("lipogram/sft", "lipogram/grpo")}
    [section] = tracker_section(metrics, tmp_path / "results" / "report.html")
    assert '<a href="lipogram/sft/train/tracker/">lipogram/sft</a>' in section
    assert "lipogram/grpo" not in section  # no tracker files: no link
    assert tracker_section({}, tmp_path / "results" / "report.html") == []


def test_preference_scoring_logs_progress_per_batch(tiny_model_dir, caplog):
    """The truthy evaluation (log-likelihood scoring) was the one long job without progress lines."""
    from rulebound.preference_eval import preference_scores_hf

    pairs = pd.DataFrame({"pair_id": ["p0", "p1", "p2"], "system": ["", "", ""], "prompt": ["Hi?", "Sky?", "Sea?"],
                          "chosen": ["Hello.", "Blue.", "Wet."], "rejected": ["Go.", "Red.", "Dry."]})
    with caplog.at_level(logging.INFO, logger="rulebound.preference_eval"):
        preference_scores_hf(tiny_model_dir, pairs, batch_size=2, variant="tiny")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("scored answers")]
    assert lines and lines[-1].startswith("scored answers 6/6 (100%)")
