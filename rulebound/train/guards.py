"""Guards against non-finite gradients: a NaN or inf step is skipped, not applied, and a run that keeps
producing them stops with an error instead of saving a broken adapter.

One NaN in a gradient, applied by AdamW, turns every weight it touches into NaN for good: the adapter saves,
merges and exports, and every answer after that is garbage. bf16 and fp32 training have no loss scaler to
catch it, so ``NonFiniteGuard`` checks the (already clipped) gradients right before ``optimizer.step`` and
drops them (``grad = None``: AdamW leaves those weights and their moments untouched) when any is not finite.
Under fp16 the Trainer's GradScaler already skips such steps (and a few at the start while it calibrates its
scale), so the guard leaves them to it.
"""

from __future__ import annotations

import logging
import math

from transformers import TrainerCallback

from rulebound.errors import RuleboundError

log = logging.getLogger(__name__)

LOG_KEY = "nonfinite_skipped"  # cumulative skipped steps, one column of metrics.csv
MAX_CONSECUTIVE = 5  # a run this stuck does not recover: stop
MAX_TOTAL = 16
HINT = ("lower learning_rate, set max_grad_norm (default 1.0), train in bf16 or fp32 rather than fp16, "
        "or check the data for empty or over-long rows")


def nonfinite_grads(parameters) -> bool:
    """Whether any gradient among ``parameters`` holds a NaN or inf: the largest absolute value of each (the
    inf-norm, which propagates NaN and, unlike the 2-norm, cannot overflow on large finite values), then the
    largest of those, with one host sync."""
    import torch

    norms = [torch.linalg.vector_norm(p.grad.detach(), ord=math.inf).float().reshape(1)
             for p in parameters if p.grad is not None]
    if not norms:
        return False
    device = norms[0].device
    return not bool(torch.isfinite(torch.cat([n.to(device) for n in norms]).amax()))


def any_process(flag: bool, device) -> bool:
    """``flag`` or-ed across the processes of a distributed run (sharded gradients can differ per rank)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    if dist.get_backend() == "gloo":
        device = torch.device("cpu")
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


class NonFiniteGuard(TrainerCallback):
    """Skip an optimizer step whose gradients are not finite; stop the run after ``max_consecutive`` such
    steps in a row or ``max_total`` in all. The count is logged as ``nonfinite_skipped`` and survives a resume
    (it is read back from the restored ``log_history``)."""

    def __init__(self, max_consecutive: int = MAX_CONSECUTIVE, max_total: int = MAX_TOTAL) -> None:
        self.max_consecutive, self.max_total = max_consecutive, max_total
        self.skipped = self.in_a_row = 0

    def on_train_begin(self, args, state, control, **kwargs):
        restored = [e[LOG_KEY] for e in state.log_history if LOG_KEY in e]
        self.skipped = int(restored[-1]) if restored else 0
        self.in_a_row = 0

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if getattr(args, "fp16", False) or model is None:  # GradScaler skips inf/NaN steps itself
            return
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            return
        bad = any_process(nonfinite_grads(params), params[0].device)
        if not bad:
            self.in_a_row = 0
            return
        for p in params:
            p.grad = None
        self.skipped += 1
        self.in_a_row += 1
        step = state.global_step + 1
        log.warning("Step %d: non-finite gradients; the step is skipped (%d skipped so far, %d in a row)",
                    step, self.skipped, self.in_a_row)
        if self.in_a_row >= self.max_consecutive or self.skipped >= self.max_total:
            raise RuleboundError(
                f"Training stopped at step {step}: {self.skipped} optimizer steps had NaN or inf gradients "
                f"({self.in_a_row} in a row; the limits are {self.max_consecutive} in a row and "
                f"{self.max_total} in all). The adapter was not written; checkpoints saved before this step are kept. To fix it: {HINT}.")

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The Trainer has already appended this step's entry to log_history (a copy of ``logs``), which is
        # what checkpoints restore and metrics.csv reads.
        if state.log_history and state.log_history[-1].get("step") == state.global_step and \
                not _is_summary(state.log_history[-1]):
            state.log_history[-1][LOG_KEY] = self.skipped


def _is_summary(entry: dict) -> bool:
    from rulebound.train.metrics import SUMMARY_KEYS

    return bool(SUMMARY_KEYS & set(entry))


def avoid_cudnn_attention() -> bool:
    """Turn off PyTorch's cuDNN scaled-dot-product attention backend when CUDA is in use; returns whether it did.

    Its backward pass can return NaN gradients for some padded-batch shapes (pytorch/pytorch#196678); the
    flash and memory-efficient backends compute the same attention without it."""
    import torch

    if not torch.cuda.is_available():
        return False
    torch.backends.cuda.enable_cudnn_sdp(False)
    log.info("cuDNN attention is off for training (pytorch/pytorch#196678: NaN gradients); "
             "flash / memory-efficient attention are used instead")
    return True
