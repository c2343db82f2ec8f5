"""Training that survives a crash: the HF Trainer's checkpoints, keyed by the run, resumed after a kill.

Every ``train.save_steps`` optimizer steps the Trainer writes ``checkpoint-<step>/`` with its full state
(adapter, optimizer, scheduler, RNG streams, ``trainer_state.json``), keeping the newest
``train.save_total_limit``. They live under the workflow's directory, outside the rule's outputs, at
``checkpoints/<run>/<key>/``: Snakemake does not delete them when a job fails, and a cluster's shared
filesystem keeps them across nodes. ``key`` is a short hash of everything that defines the run (the method's
training settings, the training data's bytes, the base model's identity, the init adapter's bytes), so a
changed config starts afresh instead of resuming a stale state.

A rerun (the same snakemake command; the profiles set ``rerun-incomplete``) resumes from the newest
*complete* checkpoint: a folder with a readable ``trainer_state.json`` (the Trainer writes it last) and the
adapter weights. A folder the process died inside is ignored and removed. Once the adapter is written, the
run's checkpoints are removed. With several processes only rank 0 deletes anything; the Trainer itself saves
from the main process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from rulebound.errors import ConfigError
from rulebound.train.distributed import is_main_process

log = logging.getLogger(__name__)

ROOT = "checkpoints"
KEY_LENGTH = 16
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
KEY = re.compile(rf"^[0-9a-f]{{{KEY_LENGTH}}}$")
STATE = "trainer_state.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Settings that change how often the state is kept, not what the run computes: a resume stays valid.
NOT_IN_KEY = ("save_steps", "save_total_limit", "report_to")


def checkpoint_root(run: str) -> str:
    """Where a run's checkpoints live, relative to the workflow's directory (the rules' ``params``)."""
    return f"{ROOT}/{run}"


# ---- the key ---------------------------------------------------------------------------------------------


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(path: str | os.PathLike) -> str:
    """The content hash of a file, or of a folder (every file's relative path and bytes, in order)."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + file_digest(file).encode())
    return digest.hexdigest()


def model_identity(model_dir: str | os.PathLike) -> dict:
    """A base model folder's identity, cheap on a many-GB model: config.json's bytes and the weight files' sizes."""
    model_dir = Path(model_dir)
    config = model_dir / "config.json"
    weights = {p.relative_to(model_dir).as_posix(): p.stat().st_size
               for p in sorted(model_dir.rglob("*")) if p.is_file() and p.suffix in WEIGHT_SUFFIXES}
    return {"config": file_digest(config) if config.is_file() else None, "weights": weights}


def run_key(settings: dict, data: str | os.PathLike, model_dir: str | os.PathLike,
            init_adapter: str | os.PathLike | None = None) -> str:
    """A short sha256 of what defines a training run; any change gives another key (and a fresh start)."""
    identity = {
        "settings": {k: v for k, v in settings.items() if k not in NOT_IN_KEY},
        "data": tree_digest(data),
        "model": model_identity(model_dir),
        "init_adapter": tree_digest(init_adapter) if init_adapter else None,
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


# ---- checkpoint folders ----------------------------------------------------------------------------------


def checkpoint_step(folder: str | os.PathLike) -> int | None:
    match = CHECKPOINT.match(Path(folder).name)
    return int(match.group(1)) if match else None


def read_state(folder: str | os.PathLike) -> dict | None:
    """A checkpoint's trainer_state.json, or None where it is missing or half-written."""
    try:
        state = json.loads((Path(folder) / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "global_step" in state else None


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether the Trainer finished writing this checkpoint: the adapter weights and, written last, its state."""
    folder = Path(folder)
    return (checkpoint_step(folder) is not None and folder.is_dir()
            and any((folder / name).is_file() for name in ADAPTER_WEIGHTS) and read_state(folder) is not None)


def checkpoint_folders(directory: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-<step>`` folders in ``directory``, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if p.is_dir() and checkpoint_step(p) is not None),
                  key=checkpoint_step)


def newest_complete(directory: str | os.PathLike) -> Path | None:
    complete = [p for p in checkpoint_folders(directory) if is_complete(p)]
    return complete[-1] if complete else None


def remove_incomplete(directory: str | os.PathLike) -> list[Path]:
    """Delete the checkpoint folders a killed process left half-written; return them."""
    removed = [p for p in checkpoint_folders(directory) if not is_complete(p)]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def remove_stale_keys(root: str | os.PathLike, keep: str) -> list[Path]:
    """Delete a run's checkpoints of earlier configs (other keys under its root); return them."""
    root = Path(root)
    if not root.is_dir():
        return []
    stale = [p for p in root.iterdir() if p.is_dir() and KEY.match(p.name) and p.name != keep]
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale


def save_arguments(cfg: dict, enabled: bool) -> dict:
    """The TrainingArguments that make the Trainer checkpoint every ``train.save_steps`` steps (or never)."""
    if not enabled:
        return {"save_strategy": "no"}
    values = {}
    for key in ("save_steps", "save_total_limit"):
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"train.{key} must be a positive integer (steps between checkpoints / checkpoints "
                              f"kept); got {value!r}. Set it in the experiment's train section (the schema's "
                              "default fills it in when the config is validated).")
        values[key] = value
    return {"save_strategy": "steps", **values}


# ---- one run's checkpoints ------------------------------------------------------------------------------


@dataclass
class Checkpoints:
    """The checkpoint folder of one run and config: ``<root>/<key>``."""

    root: Path
    key: str

    @classmethod
    def for_run(cls, root: str | os.PathLike | None, settings: dict, *, data, model_dir,
                init_adapter=None) -> Checkpoints | None:
        """The run's checkpoints, or None where the caller asked for none (no ``root``)."""
        if not root:
            return None
        save_arguments(settings, True)  # bad save settings fail before the model loads
        return cls(Path(root), run_key(settings, data, model_dir, init_adapter))

    @property
    def directory(self) -> Path:
        return self.root / self.key

    def args(self, cfg: dict) -> dict:
        return {"output_dir": str(self.directory), **save_arguments(cfg, True)}

    def prepare(self) -> Path | None:
        """Clean up (rank 0: earlier configs' keys, half-written folders) and return the checkpoint to resume."""
        if is_main_process():
            for folder in remove_stale_keys(self.root, self.key):
                log.info("removed checkpoints of an earlier config of this run: %s", folder)
            for folder in remove_incomplete(self.directory):
                log.info("ignored and removed an incomplete checkpoint (a process died while writing it): %s", folder)
        return newest_complete(self.directory)

    def finish(self) -> None:
        """Remove the run's checkpoints once its adapter is written (rank 0)."""
        if not is_main_process():
            return
        shutil.rmtree(self.directory, ignore_errors=True)
        for folder in (self.root, *self.root.parents):
            if folder.name == "" or folder == Path(".") or any(folder.iterdir()):
                break
            folder.rmdir()
            if folder.name == ROOT:
                break


def train(trainer, recorder, checkpoints: Checkpoints | None):
    """``trainer.train()``, resumed from the run's newest complete checkpoint where there is one.

    On a resume the recorder is seeded with the checkpoint's log history up to its step, so the metrics hold
    every step exactly once, and the log says ``resumed from step N of M``.
    """
    resume = checkpoints.prepare() if checkpoints else None
    if resume is None:
        if checkpoints:
            log.info("checkpoints every %d steps in %s (newest %d kept)", trainer.args.save_steps,
                     checkpoints.directory, trainer.args.save_total_limit)
        return trainer.train()
    state = read_state(resume)
    step = int(state["global_step"])
    recorder.seed(state.get("log_history", []), step)
    log.info("resumed from step %d of %d (%s)", step, int(state.get("max_steps") or 0), resume)
    return trainer.train(resume_from_checkpoint=str(resume))
