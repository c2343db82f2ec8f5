"""Record every TRL log line of every step, under TRL's own metric names."""

from __future__ import annotations

import pandas as pd
from transformers import TrainerCallback

# The Trainer's end-of-run line (train_runtime, ...) is a summary, not a step.
SUMMARY_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"}


class MetricsRecorder(TrainerCallback):
    """Collect ``on_log`` calls into rows keyed by global step."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or SUMMARY_KEYS & set(logs):
            return
        row = {"step": state.global_step, "epoch": state.epoch}
        row.update({k: float(v) for k, v in logs.items() if isinstance(v, (int, float))})
        self.rows.append(row)

    def frame(self) -> pd.DataFrame:
        if not self.rows:
            return pd.DataFrame(columns=["step", "epoch"])
        df = pd.DataFrame(self.rows)
        # one row per step: later logs of the same step (e.g. eval) fill in their own columns
        return df.groupby("step", as_index=False).last()
