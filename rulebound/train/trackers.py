"""Experiment trackers (``train.report_to``): TRL's own reporting, offline by default, files beside the run.

``none`` (the default) reports nowhere; ``tensorboard``, ``wandb``, ``trackio`` and ``mlflow`` go to
transformers' integration of that name with the run's name. No tracker needs the network: wandb runs in
offline mode unless the user set ``WANDB_MODE`` or ``WANDB_API_KEY``, mlflow writes a local file store unless
``MLFLOW_TRACKING_URI`` is set, trackio keeps its local database. The files go to ``results/<run>/train/tracker/``
(outside the rule's declared outputs, so a retry keeps the curves of the attempts before it; a fresh start
empties it).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from rulebound.train.checkpoints import REPORTERS

log = logging.getLogger(__name__)

MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "mlflow": "mlflow"}


def tracker_env(report_to: str, tracker_dir: str | os.PathLike, environ=None) -> dict:
    """The environment variables that keep ``report_to`` offline and its files in ``tracker_dir``.

    Variables the user set already win (a wandb key or mode, an mlflow server)."""
    environ = os.environ if environ is None else environ
    where = str(Path(tracker_dir).resolve())
    wanted: dict[str, str] = {}
    if report_to == "tensorboard":
        wanted["TENSORBOARD_LOGGING_DIR"] = where
    elif report_to == "wandb":
        wanted["WANDB_DIR"] = where
        if "WANDB_MODE" not in environ and "WANDB_API_KEY" not in environ:
            wanted["WANDB_MODE"] = "offline"
    elif report_to == "mlflow":
        wanted["MLFLOW_TRACKING_URI"] = Path(where, "mlruns").as_uri()
    elif report_to == "trackio":
        wanted["TRACKIO_DIR"] = where
    return {k: v for k, v in wanted.items() if k not in environ}


def setup_tracker(cfg: dict, tracker_dir: str | os.PathLike | None, *, fresh: bool, main_process: bool = True) -> dict:
    """TrainingArguments for ``cfg['report_to']`` (report_to, run_name); sets the environment it needs.

    ``fresh``: training starts at step 0, so the folder's files of an earlier run are removed first.
    """
    report_to = cfg.get("report_to", "none")
    if report_to not in REPORTERS:
        from rulebound.errors import ConfigError

        raise ConfigError(f"train.report_to = {report_to!r}; use one of {', '.join(REPORTERS)}.")
    if report_to == "none" or tracker_dir is None:
        return {"report_to": "none"}
    import importlib.util

    if importlib.util.find_spec(MODULES[report_to]) is None:
        from rulebound.errors import ConfigError

        raise ConfigError(f"train.report_to is {report_to!r} but the {MODULES[report_to]} package is not installed: "
                          f"pip install {MODULES[report_to]}, or set report_to: none.")
    tracker_dir = Path(tracker_dir)
    if main_process:
        if fresh and tracker_dir.exists():
            shutil.rmtree(tracker_dir)
        tracker_dir.mkdir(parents=True, exist_ok=True)
    env = tracker_env(report_to, tracker_dir)
    os.environ.update(env)
    log.info("tracker: %s, files in %s%s", report_to, tracker_dir,
             " (offline)" if report_to != "tensorboard" and env else "")
    return {"report_to": report_to}
