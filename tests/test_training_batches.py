"""Training batches grouped by length (``--group-by-length``): still every example once per epoch, still random and
seeded, and far less padding than random batches on data of mixed lengths (what makes IMDB at 512 affordable)."""

from __future__ import annotations

import random
from dataclasses import asdict

import pytest

from pruneport.training.data import LENGTH_GROUP_BATCHES, batch_indices, epoch_order, length_grouped_order
from pruneport.training.trainer import PhaseSettings, ResumeError, _check_settings


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(10, 512) for _ in range(n)]


def _padding(lengths: list[int], order: list[int], batch_size: int) -> int:
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return sum(max(lengths[j] for j in b) * len(b) - sum(lengths[j] for j in b) for b in batches)


def test_an_epoch_is_a_permutation():
    lengths = _lengths(1000)
    for epoch in range(3):
        order = length_grouped_order(lengths, 16, seed=5, epoch=epoch)
        assert sorted(order) == list(range(1000))


def test_same_seed_same_order_new_epoch_new_order():
    lengths = _lengths(600)
    assert length_grouped_order(lengths, 16, 1, 0) == length_grouped_order(lengths, 16, 1, 0)
    assert length_grouped_order(lengths, 16, 1, 0) != length_grouped_order(lengths, 16, 1, 1)
    assert length_grouped_order(lengths, 16, 1, 0) != length_grouped_order(lengths, 16, 2, 0)


def test_grouped_batches_pad_much_less_than_random_ones():
    lengths, batch = _lengths(2000), 16
    grouped = _padding(lengths, length_grouped_order(lengths, batch, 0, 0), batch)
    shuffled = list(range(2000))
    random.Random(0).shuffle(shuffled)
    assert grouped < 0.1 * _padding(lengths, shuffled, batch)


def test_batches_come_from_one_pool_and_their_order_is_shuffled():
    batch = 16
    lengths = _lengths(batch * LENGTH_GROUP_BATCHES * 4)  # four pools
    order = length_grouped_order(lengths, batch, 0, 0)
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    widths = [max(lengths[j] for j in b) for b in batches]
    assert widths != sorted(widths, reverse=True)  # not simply longest-first over the epoch
    shuffled = epoch_order(len(lengths), 0, 0)  # the epoch's shuffle, which the pools are cut from
    pool_of = {i: k // (batch * LENGTH_GROUP_BATCHES) for k, i in enumerate(shuffled)}
    assert all(len({pool_of[i] for i in b}) == 1 for b in batches)


def test_batch_indices_with_lengths_cover_the_epoch_in_full_batches():
    lengths, batch = _lengths(100), 8
    steps = [batch_indices(100, batch, 3, step, lengths) for step in range(100 // batch)]
    assert all(len(b) == batch for b in steps)
    seen = [i for b in steps for i in b]
    assert len(set(seen)) == len(seen) == (100 // batch) * batch
    assert batch_indices(100, batch, 3, 100 // batch, lengths) == length_grouped_order(lengths, batch, 3, 1)[:batch]


def test_checkpoints_from_before_grouping_resume_as_ungrouped(tmp_path):
    """A checkpoint written before ``group_by_length`` existed stores no such setting: it means random batches."""
    older = asdict(PhaseSettings("finetune", steps=4, batch_size=8, lr=1e-3))
    del older["group_by_length"]
    _check_settings(tmp_path / "c.pt", older, PhaseSettings("finetune", steps=4, batch_size=8, lr=1e-3))
    with pytest.raises(ResumeError, match="group_by_length"):
        grouped = PhaseSettings("finetune", steps=4, batch_size=8, lr=1e-3, group_by_length=True)
        _check_settings(tmp_path / "c.pt", older, grouped)
