"""Paired batches keep one request's rows together and cover every row once per epoch."""

import pytest

from rulebound.train.sampling import GroupedSampler, with_grouped_batches


def test_groups_stay_adjacent_and_every_row_appears_once():
    groups = [7, 7, 3, 3, 9, 9, 1, 1, 5]
    order = list(GroupedSampler(groups, seed=0))
    assert sorted(order) == list(range(len(groups)))
    # rows of one group are consecutive
    seen = [groups[i] for i in order]
    runs = [g for k, g in enumerate(seen) if k == 0 or seen[k - 1] != g]
    assert len(runs) == len(set(groups))


def test_seeded_and_reshuffled_per_epoch():
    groups = list(range(50))
    a, b = GroupedSampler(groups, seed=1), GroupedSampler(groups, seed=1)
    first = list(a)
    assert first == list(b)
    assert list(a) != first  # the next epoch draws another order
    assert list(GroupedSampler(groups, seed=2)) != first


def test_trainer_subclass_uses_the_sampler():
    class Base:
        def _get_train_sampler(self, train_dataset=None):
            return None

    cls = with_grouped_batches(Base, [0, 0, 1, 1], seed=0)
    assert cls.__name__ == "GroupedBase"
    assert isinstance(cls()._get_train_sampler(), GroupedSampler)


@pytest.mark.parametrize("cfg, cuda, expected", [
    ({}, True, True),                                   # the default on a GPU: the fast path
    ({}, False, False),                                 # CPU: plain transformers + PEFT
    ({"trainer": "trl"}, True, False),                  # TRL's plain path, one switch away
    ({"fast_path": False}, True, False),
    ({"backend": "unsloth"}, True, False),              # stock Unsloth when asked for
    ({"load_in_4bit": True}, True, False),              # QLoRA keeps its verified Unsloth/bnb path
    ({"backend": "transformers"}, True, True),
])
def test_fast_path_selection(cfg, cuda, expected):
    from rulebound.train.backend import uses_fast_path

    assert uses_fast_path(cfg, cuda=cuda) is expected
