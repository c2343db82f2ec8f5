"""Training that survives a crash: full HF Trainer checkpoints under ``checkpoints/<run>/<key>/``.

Every ``save_steps`` optimizer steps the Trainer writes ``checkpoint-<step>/`` (adapter, optimizer, scheduler,
RNG states, ``trainer_state.json``); ``CheckpointCallback`` then writes a marker file into it, and only a
checkpoint with its marker and its trainer state counts as complete: one half-written when the process was
killed is ignored, and removed before training resumes. The folder's ``<key>`` is a hash of everything that
defines the run (its settings, the training data's bytes, the base model and the initial adapter, the library
versions, the number of processes), so a changed config or new data never resumes a stale checkpoint. Nothing
here is local to one process or one machine: a rerun, a Slurm requeue or a retry on another node resumes from
the folder alone.

The folder lies outside the rule's declared outputs (Snakemake deletes those before a retry) and is removed
once the adapter is written. Checkpoints of other keys (an earlier config) are left alone and named in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

from rulebound.errors import ConfigError

log = logging.getLogger(__name__)

MARKER = "rulebound-complete.json"
TRAINER_STATE = "trainer_state.json"
PREFIX = "checkpoint-"
# Settings that change where and how often a run is recorded, not what it computes: changing one resumes.
NOT_IN_KEY = ("save_steps", "save_total_limit", "report_to")
REPORTERS = ("none", "tensorboard", "wandb", "trackio", "mlflow")
DEFAULT_SAVE_STEPS, DEFAULT_SAVE_TOTAL_LIMIT = 50, 2


def check_settings(where: str, cfg: dict) -> list[str]:
    """The checkpoint and tracker settings of one training section; problems as ``"<where>.<key>: ..."``."""
    problems = []
    for key, minimum in (("save_steps", 1), ("save_total_limit", 1)):
        value = cfg.get(key, minimum)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            problems.append(f"{where}.{key} = {value!r}: must be a whole number >= {minimum} (optimizer steps "
                            f"between checkpoints for save_steps, checkpoints kept on disk for save_total_limit); "
                            f"e.g. {key}: {DEFAULT_SAVE_STEPS if key == 'save_steps' else DEFAULT_SAVE_TOTAL_LIMIT}")
    report_to = cfg.get("report_to", "none")
    if report_to not in REPORTERS:
        problems.append(f"{where}.report_to = {report_to!r} is not a tracker rulebound sets up; use one of "
                        f"{', '.join(REPORTERS)}")
    return problems


def _sha256_file(path: Path, digest) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def content_digest(path: str | os.PathLike | None, *, weights_by_size: bool = False) -> str:
    """sha256 of a file, or of a folder's relative names and contents; "" for None.

    ``weights_by_size``: a folder's weight files (``.safetensors``, ``.bin``, ``.gguf``, ``.pt``) count by name
    and size only (a base model of many GB is not read at every start; its config and tokenizer are read in full).
    """
    if path is None:
        return ""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        _sha256_file(path, digest)
        return digest.hexdigest()
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist: it is an input of the training run.")
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        if weights_by_size and file.suffix in (".safetensors", ".bin", ".gguf", ".pt"):
            digest.update(str(file.stat().st_size).encode())
        else:
            _sha256_file(file, digest)
    return digest.hexdigest()


def run_key(cfg: dict, *, data: str | os.PathLike, base_model: str, model_dir: str | os.PathLike,
            init_adapter: str | os.PathLike | None = None, processes: int = 1) -> str:
    """16 hex digits naming one run: its settings (less NOT_IN_KEY), data, base model, initial adapter, versions."""
    import peft
    import torch
    import transformers
    import trl

    identity = {
        "settings": {k: v for k, v in cfg.items() if k not in NOT_IN_KEY},
        "data": content_digest(data),
        "base_model": base_model,
        "model": content_digest(model_dir, weights_by_size=True),
        "init_adapter": content_digest(init_adapter),
        "processes": int(processes),
        "versions": [transformers.__version__, trl.__version__, peft.__version__, torch.__version__],
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def step_of(path: Path) -> int | None:
    match = re.fullmatch(rf"{PREFIX}(\d+)", Path(path).name)
    return int(match.group(1)) if match else None


def is_complete(path: Path, step: int | None = None) -> bool:
    """A checkpoint counts once its marker (written after the Trainer's last file) names its own step."""
    try:
        marker = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (Path(path) / TRAINER_STATE).is_file() and (step is None or marker.get("step") == step)


def checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path, bool]]:
    """(step, folder, complete) of every ``checkpoint-<step>`` under ``run_dir``, oldest first."""
    root = Path(run_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        step = step_of(path)
        if step is not None and path.is_dir():
            found.append((step, path, is_complete(path, step)))
    return sorted(found)


def newest_complete(run_dir: str | os.PathLike) -> Path | None:
    complete = [path for _, path, ok in checkpoints(run_dir) if ok]
    return complete[-1] if complete else None


def drop_incomplete(run_dir: str | os.PathLike) -> list[Path]:
    """Remove half-written checkpoints (the Trainer would write into them again at the same step)."""
    dropped = [path for _, path, ok in checkpoints(run_dir) if not ok]
    for path in dropped:
        log.warning("removing the incomplete checkpoint %s (the process stopped while writing it)", path)
        shutil.rmtree(path, ignore_errors=True)
    return dropped


def prune(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Keep the newest ``keep`` complete checkpoints; older complete ones go (never the newest complete)."""
    complete = [path for _, path, ok in checkpoints(run_dir) if ok]
    removed = complete[: max(0, len(complete) - max(1, keep))]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def remove_run(run_dir: str | os.PathLike, root: str | os.PathLike | None = None) -> None:
    """Delete a finished run's checkpoints, and the parent folders up to ``root`` that are left empty."""
    run_dir = Path(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    if root is None:
        return
    root, parent = Path(root).resolve(), run_dir.resolve().parent
    while parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        if parent == root:
            break
        parent = parent.parent


def _write_marker(path: Path, step: int, key: str) -> None:
    tmp = path / (MARKER + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"step": step, "key": key}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path / MARKER)


class CheckpointCallback(TrainerCallback):
    """Marks each checkpoint complete once the Trainer has written it, keeps ``keep`` of them, and skips the
    Trainer's extra save at the last step (the adapter is written right after; that save would only cost time)."""

    def __init__(self, run_dir: str | os.PathLike, key: str, keep: int) -> None:
        self.run_dir, self.key, self.keep = Path(run_dir), key, keep

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save and state.global_step >= state.max_steps and state.global_step % args.save_steps:
            control.should_save = False
        return control

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            path = self.run_dir / f"{PREFIX}{state.global_step}"
            if path.is_dir():
                _write_marker(path, state.global_step, self.key)
                prune(self.run_dir, self.keep)
        return control


class Checkpoints:
    """One run's checkpoint folder: ``output_dir`` for the Trainer, where to resume, and the clean-up.

    ``root`` is the run's folder under the workflow (``checkpoints/<run>``); ``None`` turns checkpoints off
    (library calls without a workflow): the Trainer then writes into a scratch folder that is removed.
    """

    def __init__(self, root: str | os.PathLike | None, key: str | None, cfg: dict) -> None:
        self.root = Path(root) if root else None
        self.key = key
        self.save_steps = int(cfg.get("save_steps", DEFAULT_SAVE_STEPS))
        self.keep = int(cfg.get("save_total_limit", DEFAULT_SAVE_TOTAL_LIMIT))
        self.dir = self.root / key if self.root and key else None

    @property
    def enabled(self) -> bool:
        return self.dir is not None

    def args(self) -> dict:
        """TrainingArguments for saving (rotation is CheckpointCallback's, after its marker)."""
        if not self.enabled:
            return {"save_strategy": "no"}
        return {"save_strategy": "steps", "save_steps": self.save_steps, "save_total_limit": None,
                "save_only_model": False}

    def callbacks(self) -> list:
        return [CheckpointCallback(self.dir, self.key, self.keep)] if self.enabled else []

    def latest(self, main_process: bool = True) -> str | None:
        """The newest complete checkpoint (half-written ones removed first, by the main process); None: none."""
        if not self.enabled:
            return None
        if main_process:
            drop_incomplete(self.dir)
        newest = newest_complete(self.dir)
        return str(newest) if newest else None

    def announce(self, resume: str | None, planned: int) -> None:
        """The training log's line: ``resumed from step N of M``, or why training starts at step 0."""
        if not self.enabled:
            return
        if resume:
            log.info("resumed from step %d of %d (%s)", step_of(Path(resume)), planned, resume)
            return
        others = sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != self.key) \
            if self.root.is_dir() else []
        log.info("no checkpoint to resume from in %s: training from step 0, a checkpoint every %d steps%s",
                 self.dir, self.save_steps,
                 f" (checkpoints of other settings or data, not resumed: {', '.join(others)})" if others else "")

    def finish(self, main_process: bool = True) -> None:
        """Remove the run's checkpoints once its adapter is written."""
        if self.enabled and main_process:  # empty parents go too, up to the top folder (checkpoints/)
            remove_run(self.dir, self.root if self.root.is_absolute() else Path(self.root.parts[0]))


def ref_adapter_fix(trainer, checkpoint: str | None) -> None:
    """Resuming a PEFT model with several adapters (GRPO's frozen "ref" copy beside "default"), transformers
    loads only the subfolders and never the root's "default" weights; load them too, in place (the optimizer
    keeps the parameters it holds). A no-op for one adapter or a fresh start."""
    if checkpoint is None:
        return

    class LoadDefaultAdapter(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            model = trainer.accelerator.unwrap_model(trainer.model)
            weights = Path(checkpoint) / "adapter_model.safetensors"
            if len(getattr(model, "peft_config", {})) > 1 and weights.is_file():
                from peft import set_peft_model_state_dict
                from safetensors.torch import load_file

                set_peft_model_state_dict(model, load_file(str(weights)), adapter_name="default")
                model.set_adapter("default")
            return control

    trainer.add_callback(LoadDefaultAdapter())


def step_metrics(log_history: list[dict]):
    """One row per step from the Trainer's ``log_history`` (restored from the checkpoint on a resume, so every
    step appears exactly once), under TRL's metric names; the end-of-run summary is left out."""
    import pandas as pd

    from rulebound.train.metrics import SUMMARY_KEYS

    rows = []
    for entry in log_history:
        if SUMMARY_KEYS & set(entry) or "step" not in entry:
            continue
        row = {"step": int(entry["step"]), "epoch": entry.get("epoch")}
        row.update({k: float(v) for k, v in entry.items()
                    if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)})
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["step", "epoch"])
    return pd.DataFrame(rows).groupby("step", as_index=False).last()


class RunSetup:
    """What a trainer needs for checkpoints and a tracker: TrainingArguments overrides, callbacks, where to resume.

    ``checkpoint_root`` (``checkpoints/<run>``, a rule param) None: no checkpoints, the Trainer writes into
    ``scratch``; ``key_inputs`` are run_key's keyword arguments (data, base_model, model_dir, init_adapter)."""

    def __init__(self, cfg: dict, *, run_name: str, scratch: str, checkpoint_root=None, tracker_dir=None,
                 key_inputs: dict | None = None) -> None:
        from rulebound.train.distributed import is_main_process, world_size
        from rulebound.train.guards import avoid_cudnn_attention
        from rulebound.train.trackers import setup_tracker

        avoid_cudnn_attention()
        problems = check_settings("train", cfg)
        if problems:
            raise ConfigError("; ".join(problems))
        self.main = is_main_process()
        key = run_key(cfg, processes=world_size(), **(key_inputs or {})) if checkpoint_root else None
        self.checkpoints = Checkpoints(checkpoint_root, key, cfg)
        self.output_dir = str(self.checkpoints.dir) if self.checkpoints.enabled else scratch
        self.resume = self.checkpoints.latest(self.main)
        self.args = {**self.checkpoints.args(), "run_name": run_name,
                     **setup_tracker(cfg, tracker_dir, fresh=self.resume is None, main_process=self.main)}

    def callbacks(self, logger, metric: str | None) -> list:
        from rulebound.train.guards import NonFiniteGuard
        from rulebound.train.metrics import TrainingProgress

        return [NonFiniteGuard(), *self.checkpoints.callbacks(), TrainingProgress(logger, metric)]

    def train(self, trainer, planned: int):
        """``trainer.train()``, from the newest complete checkpoint where there is one (logged)."""
        self.checkpoints.announce(self.resume, planned)
        ref_adapter_fix(trainer, self.resume)
        return trainer.train(resume_from_checkpoint=self.resume)

    def finish(self) -> None:
        self.checkpoints.finish(self.main)
