"""Training progress lines in the job's log, and what counts as a step's metrics (the end-of-run summary does not)."""

from __future__ import annotations

from transformers import TrainerCallback

# The Trainer's end-of-run line (train_runtime, ...) is a summary, not a step.
SUMMARY_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"}


class TrainingProgress(TrainerCallback):
    """A progress line in the job's log every ``every_s`` seconds and at the last step, for ``tail -f``:
    ``step 40/130 (31%), loss 1.234, rewards/accuracies 0.750, 1 min 02 s elapsed, ETA 2 min 19 s``.

    ``metric`` is the task's key metric under TRL's name; elapsed and ETA count this process's steps only,
    so a resumed run's ETA is not skewed by the steps it restored."""

    def __init__(self, logger, metric: str | None = None, every_s: float = 10.0, clock=None) -> None:
        import time

        self.log, self.metric, self.every_s = logger, metric, every_s
        self.clock = clock or time.monotonic
        self.start = self.first_step = self.last = None
        self.latest: dict = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.last = self.clock()
        self.first_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and SUMMARY_KEYS & set(logs):
            return
        if logs:
            self.latest.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
        now = self.clock()
        if state.global_step < state.max_steps and now - self.last < self.every_s:
            return
        self.last = now
        self.log.info("%s", self.line(state.global_step, state.max_steps, now))

    def line(self, step: int, total: int, now: float) -> str:
        from rulebound.progress import duration

        parts = [f"step {step}/{total} ({step / total if total else 1:.0%})"]
        for key in ("loss", self.metric):
            if key and key in self.latest:
                parts.append(f"{key} {self.latest[key]:.4g}")
        elapsed = now - self.start
        parts.append(f"{duration(elapsed)} elapsed")
        done = step - self.first_step
        if 0 < done and step < total:
            parts.append(f"ETA {duration(elapsed / done * (total - step))}")
        return ", ".join(parts)
