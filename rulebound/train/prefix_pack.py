"""Shared-prefix packing of ORPO/DPO pairs: each pair's common prompt goes through the decoder once.

A preference pair is two rows, prompt + chosen and prompt + rejected. In a causal decoder the hidden
states of the positions the two rows share at the start are identical, so computing them twice is waste
(for prompts as long as the answers, a third of a padded batch's tokens). This packs every pair of a
batch into one row without padding::

    [ shared prefix | chosen tail | rejected tail ] [ shared prefix | chosen tail | rejected tail ] ...

with position ids that restart per pair (the rejected tail continues from the prefix, as if the chosen
tail were not there) and an attention mask that lets a token see earlier tokens of its own pair, except
that rejected-tail tokens never see the chosen tail. Every hidden state then equals the one the padded
two-row forward would give, so losses, metrics and gradients are unchanged (up to float rounding).

The mask is a ``BlockMask`` for flex attention (block-sparse: the cost follows the tokens, not the
square of the packed length), a boolean [1, 1, L, L] tensor for SDPA (CPU, tests), or an additive
float mask for eager attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SHARED, CHOSEN, REJECTED, PAD = 0, 1, 2, 3


@dataclass
class PackedPairs:
    input_ids: torch.Tensor  # [1, L]
    position_ids: torch.Tensor  # [1, L]
    pair: torch.Tensor  # [L] pair index of each packed token (padding: its own index, n_pairs)
    segment: torch.Tensor  # [L] SHARED / CHOSEN / REJECTED / PAD
    index: torch.Tensor  # [2B, S]: packed position of each real token of the original rows; L for padding
    shared: list[int]  # shared prefix length per pair

    @property
    def length(self) -> int:
        return self.input_ids.shape[1]

    @property
    def real_tokens(self) -> int:
        return int((self.segment != PAD).sum())


def right_padded(attention_mask: torch.Tensor) -> bool:
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return bool((attention_mask.bool() == (positions < attention_mask.sum(1, keepdim=True))).all())


def pack_pairs(input_ids: torch.Tensor, attention_mask: torch.Tensor, n_pairs: int, pad_id: int,
               multiple: int = 1) -> PackedPairs:
    """Pack rows ``[chosen_0..chosen_{B-1}, rejected_0..rejected_{B-1}]`` (right-padded) pair by pair.

    The shared prefix of a pair is the longest common prefix of its two rows' real tokens. ``multiple``
    pads the packed length up to a multiple (fewer distinct shapes for a compiled attention kernel); the
    padding tokens form their own block and their hidden states are never read.
    """
    if input_ids.shape[0] != 2 * n_pairs:
        raise ValueError(f"expected {2 * n_pairs} rows (chosen then rejected), got {input_ids.shape[0]}")
    if not right_padded(attention_mask):
        raise ValueError("pack_pairs needs right-padded rows")
    device = input_ids.device
    lengths = attention_mask.sum(1).tolist()
    rows, width = input_ids.shape
    index = torch.full((rows, width), -1, dtype=torch.long, device=device)
    ids, pos, pair, seg, shared = [], [], [], [], []
    start = 0
    for i in range(n_pairs):
        c, r = i, n_pairs + i
        lc, lr = lengths[c], lengths[r]
        m = min(lc, lr)
        differ = (input_ids[c, :m] != input_ids[r, :m]).nonzero()
        s = int(differ[0, 0]) if len(differ) else m
        shared.append(s)
        ids += [input_ids[c, :lc], input_ids[r, s:lr]]
        pos += [torch.arange(lc, device=device), torch.arange(s, lr, device=device)]
        seg_c = torch.full((lc,), CHOSEN, device=device)
        seg_c[:s] = SHARED
        seg += [seg_c, torch.full((lr - s,), REJECTED, device=device)]
        pair.append(torch.full((lc + lr - s,), i, device=device))
        index[c, :lc] = torch.arange(start, start + lc, device=device)
        index[r, :s] = torch.arange(start, start + s, device=device)
        index[r, s:lr] = torch.arange(start + lc, start + lc + lr - s, device=device)
        start += lc + lr - s
    extra = (-start) % multiple
    if extra:
        ids.append(torch.full((extra,), pad_id, dtype=input_ids.dtype, device=device))
        pos.append(torch.arange(extra, device=device))
        seg.append(torch.full((extra,), PAD, device=device))
        pair.append(torch.full((extra,), n_pairs, device=device))
    total = start + extra
    index[index < 0] = total  # padding of the original rows reads a zero row appended after the packed ones
    return PackedPairs(
        input_ids=torch.cat(ids)[None], position_ids=torch.cat(pos)[None], pair=torch.cat(pair),
        segment=torch.cat(seg), index=index, shared=shared,
    )


def allowed(pair: torch.Tensor, segment: torch.Tensor, q, kv):
    """Whether packed query ``q`` may attend to packed key ``kv`` (works on index tensors, for flex too)."""
    same = pair[q] == pair[kv]
    return same & (kv <= q) & ~((segment[q] == REJECTED) & (segment[kv] == CHOSEN))


def attention_mask(packed: PackedPairs, implementation: str, dtype: torch.dtype = torch.float32):
    """The packed rows' mask in the form the model's attention implementation takes."""
    length, device = packed.length, packed.input_ids.device
    if implementation == "flex_attention":
        from torch.nn.attention.flex_attention import create_block_mask

        pair, segment = packed.pair, packed.segment

        def mask_mod(b, h, q, kv):
            return allowed(pair, segment, q, kv)

        return create_block_mask(mask_mod, B=None, H=None, Q_LEN=length, KV_LEN=length, device=device)
    q = torch.arange(length, device=device)[:, None]
    kv = torch.arange(length, device=device)[None, :]
    dense = allowed(packed.pair, packed.segment, q, kv)[None, None]
    if implementation == "sdpa":
        return dense
    return torch.zeros(dense.shape, dtype=dtype, device=device).masked_fill_(~dense, torch.finfo(dtype).min)
