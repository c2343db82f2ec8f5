"""SFT without padding: TRL's SFTTrainer and its chunked loss, each batch packed into one row.

TRL pads a batch of prompt-completion chats to its longest row, so a batch of short lipogram answers spends
most of its attention and MLP work on padding. ``FastSFTTrainer`` packs the batch TRL's collator made into
one row (every row's tokens one after another, position ids restarting per row, no padding between rows) and
hands it to TRL's own ``compute_loss``. transformers turns restarting position ids into a block-diagonal
causal mask (a block-sparse ``BlockMask`` with flex attention), so every token sees exactly what it saw in its
padded row: the same loss (TRL's ``chunked_nll``, the lm_head only on answer tokens), the same gradients,
the same rows per step. On a GPU the training rule adds flex attention and compiled decoder layers, and the
packed length is rounded up to a multiple of 256 so the compiled kernels see few shapes.
"""

from __future__ import annotations

import torch
from trl import SFTTrainer

from rulebound.errors import ConfigError
from rulebound.train.backend import cuda_available

TRAINERS = ("fast", "trl")


def uses_fast_sft(cfg: dict, cuda: bool | None = None) -> bool:
    """Whether an SFT method runs FastSFTTrainer: ``trainer: fast`` (the default) on a CUDA GPU, 16-bit weights,
    backend auto or transformers. On a CPU the default stays TRL's SFTTrainer (the README's figures)."""
    trainer = cfg.get("trainer", "fast")
    if trainer not in TRAINERS:
        raise ConfigError(f"SFT trainer must be one of {', '.join(TRAINERS)}; got {trainer!r}.")
    if cuda is None:
        cuda = cuda_available()
    return (cuda and trainer == "fast" and cfg.get("backend", "auto") in ("auto", "transformers")
            and not cfg.get("load_in_4bit", False))


def pack_rows(inputs: dict, pad_id: int, multiple: int = 1) -> dict:
    """One packed row from a right-padded batch: input_ids, labels and restarting position_ids, no mask.

    Each row's first token gets label -100, so no loss crosses from one row into the next (its label is a
    prompt token, -100 already, wherever the loss is on completions only); the padding that rounds the
    length up to ``multiple`` is one more sequence of its own with labels -100.
    """
    mask = inputs["attention_mask"].bool()
    lengths = mask.sum(1)
    keep = mask.reshape(-1)
    ids = inputs["input_ids"].reshape(-1)[keep]
    labels = inputs["labels"].reshape(-1)[keep].clone()
    starts = torch.cumsum(lengths, 0) - lengths
    positions = torch.arange(ids.numel(), device=ids.device) - torch.repeat_interleave(starts, lengths)
    labels[positions == 0] = -100
    extra = (-ids.numel()) % multiple
    if extra:
        ids = torch.cat([ids, ids.new_full((extra,), pad_id)])
        labels = torch.cat([labels, labels.new_full((extra,), -100)])
        positions = torch.cat([positions, torch.arange(extra, device=ids.device)])
    packed = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "labels")}
    packed.update(input_ids=ids[None], labels=labels[None], position_ids=positions[None])
    return packed


class FastSFTTrainer(SFTTrainer):
    """``trl.SFTTrainer`` on packed batches: TRL's loss and metrics, no compute on padding (module docstring)."""

    def __init__(self, *args, pack_multiple: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.loss_type not in ("chunked_nll", "nll"):
            raise ConfigError(f"FastSFTTrainer packs batches for the nll losses; loss_type is {self.args.loss_type!r}.")
        self.pack_multiple = pack_multiple

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "attention_mask" not in inputs or "labels" not in inputs or self._is_vision_dataset:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        real_tokens = int(inputs["attention_mask"].sum())
        packed = pack_rows(inputs, self._tokenizer.pad_token_id, self.pack_multiple)
        before = self._total_train_tokens
        result = super().compute_loss(model, packed, return_outputs, num_items_in_batch)
        if self.model.training:  # TRL counts a packed row's length, padding included; count real tokens
            self._total_train_tokens = before + real_tokens // self._tp_size
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return result
