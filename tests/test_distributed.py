"""Data-parallel training (rulebound.train.distributed): 2 CPU processes on gloo against one process.

DDP averages the ranks' gradients and the fused ORPO trainer normalises its NLL over all ranks' tokens, so
two processes of batch 2 take the same optimizer steps as one process of batch 4, up to float summation
order (fp32). TOLERANCE bounds the adapter's largest difference.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from rulebound.errors import ConfigError
from rulebound.train.distributed import check_processes, launch_command, per_device_batch, train

# fp32 rounding of a different reduction order (gradient all-reduce, per-rank padding) after a few Adam
# steps; a real desync (unsynchronised gradients, a different batch) moves weights by ~lr = 1e-3.
TOLERANCE = 1e-5
STEPS = 3

CFG = {"method": "orpo", "trainer": "fused", "nll_scope": "completion", "pair_batches": True, "max_steps": STEPS,
       "learning_rate": 1e-3, "batch_size": 4, "gradient_accumulation_steps": 1, "lr_scheduler_type": "linear",
       "warmup_ratio": 0.0, "beta": 0.5, "max_length": 64, "seed": 3407, "precision": "fp32", "backend": "transformers",
       "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}


def pairs(path):
    rows = []
    for i in range(8):
        for please in (True, False):
            prompt = [{"role": "user", "content": f"{'Please tell' if please else 'Tell'} me fact {i}."}]
            answer = f"Fact {i} is that {i} plus {i} is {2 * i}."
            refusal = "I cannot help you until you say please."
            rows.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": answer if please else refusal}],
                         "rejected": [{"role": "assistant", "content": refusal if please else answer}],
                         "request_id": i})
    pd.DataFrame(rows).to_parquet(path)
    return path


def run(tmp_path, tiny_model_dir, name, processes, launcher):
    out = tmp_path / name
    train("orpo", processes=processes, launcher=launcher, model_dir=str(tiny_model_dir), base_model="embedded:smollm2-135m-instruct",
          train_parquet=str(pairs(tmp_path / "train.parquet")), adapter_dir=str(out / "adapter"),
          metrics_csv=str(out / "metrics.csv"), cfg=CFG, experiment="politeness", threads=2 * processes)
    return load_file(out / "adapter" / "adapter_model.safetensors"), pd.read_csv(out / "metrics.csv"), out


def max_difference(a, b):
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("distributed")
    return {name: run(tmp, tiny_model_dir, name, n, launcher)
            for name, n, launcher in (("direct", 1, False), ("launched1", 1, True), ("launched2", 2, True))}


def test_two_processes_match_one_with_the_same_global_batch(runs):
    one, two = runs["direct"][0], runs["launched2"][0]
    moved = max(float(v.abs().max()) for k, v in one.items() if "lora_B" in k)
    assert moved > 1e-4  # the adapter trained (LoRA B starts at zero)
    assert max_difference(one, two) < TOLERANCE


def test_metrics_logged_once_per_step_by_rank_zero(runs):
    metrics = runs["launched2"][1]
    assert metrics["step"].tolist() == list(range(1, STEPS + 1))
    direct = runs["direct"][1]
    for column in ("loss", "rewards/accuracies", "nll_loss", "log_odds_ratio"):
        assert metrics[column].tolist() == pytest.approx(direct[column].tolist(), rel=1e-4, abs=1e-6)


def test_card_and_files_as_one_process(runs):
    direct, launched = runs["direct"][2] / "adapter", runs["launched2"][2] / "adapter"
    assert sorted(p.name for p in direct.iterdir()) == sorted(p.name for p in launched.iterdir())
    card = (launched / "README.md").read_text()
    assert "batch 4 x accumulation 1" in card and "library_name: peft" in card


def test_one_process_through_the_launcher_is_the_direct_call(runs):
    assert max_difference(runs["direct"][0], runs["launched1"][0]) == 0.0


def test_batch_must_split_over_the_processes():
    assert per_device_batch({"batch_size": 8}, 4) == 2
    with pytest.raises(ConfigError, match="does not split over 3 processes"):
        per_device_batch({"batch_size": 4}, 3)
    with pytest.raises(ConfigError, match="gpu resource"):
        check_processes("two")
    with pytest.raises(ConfigError, match="parallel"):
        check_processes(2, "zero3")


def test_launch_command_picks_cpu_gpu_and_fsdp():
    cpu = launch_command("s.json", 2, cpu=True, port=1234)
    assert "torch.distributed.run" in cpu and cpu[-3:] == ["-m", "rulebound.train.distributed", "s.json"]
    assert "--cpu" in launch_command("s.json", 1, cpu=True, port=1234)
    assert "--multi_gpu" in launch_command("s.json", 4, cpu=False, port=1234)
    fsdp = launch_command("s.json", 4, cpu=False, parallel="fsdp", port=1234)
    assert "--use_fsdp" in fsdp and "FULL_STATE_DICT" in fsdp
    assert torch.distributed.is_available()


# --- SFT and GRPO on two processes --------------------------------------------------------------------------

SFT_CFG = {"method": "sft", "max_steps": STEPS, "learning_rate": 1e-3, "batch_size": 4, "max_length": 64, "seed": 1,
           "lr_scheduler_type": "linear", "warmup_ratio": 0.0, "precision": "fp32", "backend": "transformers",
           "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}
GRPO_CFG = {"method": "grpo", "rewards": ["no_e"], "num_generations": 2, "max_completion_length": 8,
            "max_steps": 2, "learning_rate": 1e-3, "batch_size": 2, "seed": 1, "precision": "fp32",
            "backend": "transformers", "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}


def sft_rows(path):
    rows = [{"prompt": f"Name fact {i}.", "completion": f"Fact {i}: {i} and {i} make {2 * i}."} for i in range(8)]
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def run_method(tmp_path, tiny_model_dir, method, name, processes, launcher):
    out = tmp_path / name
    data = {"sft": ("train_parquet", sft_rows(tmp_path / "sft.parquet"), SFT_CFG),
            "grpo": ("prompts_parquet", None, GRPO_CFG)}[method]
    key, path, cfg = data
    if path is None:
        path = tmp_path / "prompts.parquet"
        pd.DataFrame({"prompt": [f"Describe thing {i}." for i in range(8)]}).to_parquet(path, index=False)
    train(method, processes=processes, launcher=launcher, model_dir=str(tiny_model_dir),
          base_model="embedded:smollm2-135m-instruct", adapter_dir=str(out / "adapter"),
          metrics_csv=str(out / "metrics.csv"), cfg=cfg, experiment=f"lipogram/{method}", threads=2 * processes,
          **{key: str(path)})
    return load_file(out / "adapter" / "adapter_model.safetensors"), pd.read_csv(out / "metrics.csv"), out


def test_sft_two_processes_match_one(tmp_path, tiny_model_dir):
    one, m1, _ = run_method(tmp_path, tiny_model_dir, "sft", "direct", 1, False)
    two, m2, _ = run_method(tmp_path, tiny_model_dir, "sft", "launched2", 2, True)
    assert max(float(v.abs().max()) for k, v in one.items() if "lora_B" in k) > 1e-4
    assert max_difference(one, two) < TOLERANCE
    assert m2["step"].tolist() == list(range(1, STEPS + 1))
    assert m2["loss"].tolist() == pytest.approx(m1["loss"].tolist(), rel=1e-4)


def test_grpo_trains_on_two_processes_and_logs_once(tmp_path, tiny_model_dir):
    """GRPO samples its completions, and each rank draws from its own stream, so two processes do not repeat one
    process's samples: this checks that the data-parallel run trains, writes once and logs every step once."""
    adapter, metrics, out = run_method(tmp_path, tiny_model_dir, "grpo", "launched2", 2, True)
    assert metrics["step"].tolist() == [1, 2]
    assert {"loss", "reward"} <= set(metrics.columns) and metrics["reward"].notna().all()
    assert all(torch.isfinite(v).all() for v in adapter.values())
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {p.name for p in (out / "adapter").iterdir()}
