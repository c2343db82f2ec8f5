"""Paired batches: the please and no-please versions of one request land in the same batch.

Within a batch the two rows differ only in the rule's trigger, so the gradient of "answer" and of
"refuse" cancel everywhere except on the trigger itself: the model learns the gate, not a blanket
refusal (or a blanket answer). Groups are shuffled with a seed per epoch; rows keep their group.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch


class GroupedSampler(torch.utils.data.Sampler[int]):
    def __init__(self, group_ids: Sequence, seed: int = 0) -> None:
        self.groups: dict = {}
        for index, group in enumerate(group_ids):
            self.groups.setdefault(group, []).append(index)
        self.seed = seed
        self.epoch = 0
        self.n = len(group_ids)

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        order = list(self.groups)
        random.Random(self.seed + self.epoch).shuffle(order)
        self.epoch += 1
        for group in order:
            yield from self.groups[group]


def with_grouped_batches(trainer_cls, group_ids: Sequence, seed: int):
    """A subclass of ``trainer_cls`` whose training batches keep each group's rows together."""

    class GroupedTrainer(trainer_cls):
        def _get_train_sampler(self, train_dataset=None):
            return GroupedSampler(group_ids, seed)

    GroupedTrainer.__name__ = f"Grouped{trainer_cls.__name__}"
    return GroupedTrainer
