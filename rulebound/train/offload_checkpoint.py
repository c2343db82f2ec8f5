"""Gradient checkpointing whose saved layer inputs wait in pinned CPU memory (as Unsloth's "unsloth" mode).

Plain checkpointing keeps every decoder layer's input on the GPU until the backward pass: for a 3B model
at 2,500 tokens a step, 28 x 2,560 x 3,072 bf16 is 440 MB, more than what separates a LoRA run from the
weights' own size. Here each layer's input is copied to pinned host memory on a side stream while the next
layer computes, and copied back just before that layer's recompute in the backward pass. The values, and
so the loss and gradients, are those of ordinary (reentrant) checkpointing; on a CPU nothing is moved.

    enable_offloaded_checkpointing(model)    # after model.gradient_checkpointing_enable()
"""

from __future__ import annotations

import torch

_STREAMS: dict = {}


def _side_stream(device: torch.device):
    if device not in _STREAMS:
        _STREAMS[device] = torch.cuda.Stream(device)
    return _STREAMS[device]


class OffloadedCheckpoint(torch.autograd.Function):
    """``function(hidden, *args)`` run without saving activations; ``hidden`` parked on the host for backward."""

    @staticmethod
    def forward(ctx, function, hidden, *args):
        ctx.function, ctx.args, ctx.device, ctx.n_args = function, args, hidden.device, len(args)
        ctx.autocast = (torch.is_autocast_enabled(hidden.device.type),
                        torch.get_autocast_dtype(hidden.device.type))
        with torch.no_grad():
            out = function(hidden, *args)
        if hidden.device.type == "cuda":
            stream = _side_stream(hidden.device)
            stream.wait_stream(torch.cuda.current_stream(hidden.device))
            host = torch.empty(hidden.shape, dtype=hidden.dtype, pin_memory=True)
            with torch.cuda.stream(stream):
                host.copy_(hidden, non_blocking=True)
            hidden.record_stream(stream)  # the GPU copy is freed only once the transfer is done
            ctx.saved = host
        else:
            ctx.saved = hidden.detach()
        return out

    @staticmethod
    def backward(ctx, *grads):
        if ctx.device.type == "cuda":
            torch.cuda.current_stream(ctx.device).wait_stream(_side_stream(ctx.device))
            hidden = ctx.saved.to(ctx.device, non_blocking=True)
        else:
            hidden = ctx.saved
        hidden = hidden.detach().requires_grad_(True)
        enabled, dtype = ctx.autocast
        with torch.enable_grad(), torch.autocast(ctx.device.type, dtype=dtype, enabled=enabled):
            out = ctx.function(hidden, *ctx.args)
        outs = out if isinstance(out, tuple) else (out,)
        pairs = [(o, g) for o, g in zip(outs, grads) if torch.is_tensor(o) and o.requires_grad and g is not None]
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        ctx.saved = ctx.function = ctx.args = None
        return (None, hidden.grad) + (None,) * ctx.n_args


def offloaded_checkpoint(function, *args, **kwargs):
    """A ``_gradient_checkpointing_func`` for transformers' GradientCheckpointingLayer."""
    if kwargs:
        raise TypeError(f"offloaded checkpointing takes positional inputs only, got {sorted(kwargs)}")
    hidden, rest = args[0], args[1:]
    if not hidden.requires_grad:  # nothing upstream is trained: checkpointing changes nothing
        return function(*args)
    return OffloadedCheckpoint.apply(function, hidden, *rest)


def enable_offloaded_checkpointing(model) -> int:
    """Switch every checkpointed decoder layer of ``model`` to offloaded checkpointing; return how many."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    n = 0
    for module in model.modules():
        if isinstance(module, GradientCheckpointingLayer) and getattr(module, "gradient_checkpointing", False):
            module._gradient_checkpointing_func = offloaded_checkpoint
            n += 1
    return n
