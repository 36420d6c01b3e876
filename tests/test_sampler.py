"""The length-grouped sampler of training, the layer-by-layer init and the inhibitor calibration."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler

from quant.train.sampler import LengthGroupedSampler, padding_ratio


def snippet_lengths(n: int = 4000, seed: int = 0) -> torch.Tensor:
    """Lengths shaped like RT snippets under truncation 64: mean ~27, long right tail, capped."""
    gen = torch.Generator().manual_seed(seed)
    return (4 + torch.empty(n).exponential_(1 / 23, generator=gen)).round().clamp(max=64).long()


def flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


@pytest.mark.parametrize("n", [1, 15, 16, 801, 1000])
def test_each_epoch_is_a_permutation_cut_into_batches(n):
    sampler = LengthGroupedSampler(snippet_lengths(n), batch_size=16, seed=3, window=5)
    for epoch in range(3):
        batches = sampler.batches(epoch)
        assert sorted(flat(batches)) == list(range(n))
        assert len(batches) == len(sampler) == -(-n // 16)
        assert sum(len(b) != 16 for b in batches) <= 1 and all(0 < len(b) <= 16 for b in batches)


def test_deterministic_for_a_seed_and_different_between_epochs_and_seeds():
    lengths = snippet_lengths(1000)
    a, b = LengthGroupedSampler(lengths, 16, seed=1), LengthGroupedSampler(lengths, 16, seed=1)
    assert a.batches(0) == b.batches(0) and a.batches(4) == b.batches(4)
    assert a.batches(0) != a.batches(1)
    assert a.batches(0) != LengthGroupedSampler(lengths, 16, seed=2).batches(0)


def test_batches_within_a_window_are_cut_from_one_length_sorted_run():
    lengths = snippet_lengths(2000)
    window, size = 10, 16
    sampler = LengthGroupedSampler(lengths, size, seed=0, window=window)
    gen = torch.Generator().manual_seed(0)  # the sampler's own first draw: the permutation
    order = torch.randperm(len(lengths), generator=gen)
    windows = [set(order[i:i + window * size].tolist()) for i in range(0, len(order), window * size)]
    for batch in sampler.batches(0):
        home = [w for w in windows if batch[0] in w]
        assert len(home) == 1 and set(batch) <= home[0]  # a batch never spans two windows
        assert lengths[batch].tolist() == sorted(lengths[batch].tolist())
    # batches of one window do not overlap in length (it was sorted before it was cut)
    for w in windows:
        spans = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in sampler.batches(0) if b[0] in w)
        assert all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:]))


def test_grouping_cuts_padding_where_random_batches_waste_half():
    lengths = snippet_lengths(4000)
    grouped = padding_ratio(lengths, LengthGroupedSampler(lengths, 16, seed=0, window=50).batches(0))
    random = padding_ratio(lengths, LengthGroupedSampler(lengths, 16, seed=0, window=0).batches(0))
    assert grouped < 1.1 and random > 1.5


def test_batch_order_is_shuffled_not_sorted_by_length():
    lengths = snippet_lengths(4000)
    batches = LengthGroupedSampler(lengths, 16, seed=0, window=50).batches(0)
    longest = torch.tensor([int(lengths[b].max()) for b in batches])
    assert not bool((longest[1:] >= longest[:-1]).all()) and not bool((longest[1:] <= longest[:-1]).all())


def test_window_zero_in_one_process_is_the_distributed_sampler_order_of_before():
    n, seed = 1003, 7
    sampler = LengthGroupedSampler(snippet_lengths(n), 16, seed=seed, window=0)
    ref = DistributedSampler(range(n), num_replicas=1, rank=0, shuffle=True, seed=seed, drop_last=False)
    for epoch in range(2):
        ref.set_epoch(epoch)
        order = list(ref)
        assert sampler.batches(epoch) == [order[i:i + 16] for i in range(0, n, 16)]


@pytest.mark.parametrize("n,world", [(1000, 2), (1003, 2), (997, 3), (5, 4)])
@pytest.mark.parametrize("window", [0, 50])
def test_ddp_ranks_split_every_step_and_cover_every_index(n, world, window):
    lengths = snippet_lengths(n)
    ranks = [LengthGroupedSampler(lengths, 8, seed=0, window=window, world=world, rank=r) for r in range(world)]
    mine = [s.batches(0) for s in ranks]
    assert len({len(m) for m in mine}) == 1 and len(mine[0]) == len(ranks[0])  # same step count
    assert all(len({len(m[step]) for m in mine}) == 1 for step in range(len(mine[0])))  # same batch size
    seen = [i for m in mine for i in flat(m)]
    padded = -(-n // world) * world
    assert len(seen) == padded and set(seen) == set(range(n))  # every index, padding repeats only
    if n % world == 0:
        assert sorted(seen) == list(range(n))  # exactly once
    # the ranks' slices of one step are slices of one global batch
    glob = ranks[0].global_batches(0)
    assert [flat([m[step] for m in mine]) for step in range(len(glob))] == glob


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        LengthGroupedSampler(snippet_lengths(10), 0)
    with pytest.raises(ValueError):
        LengthGroupedSampler(snippet_lengths(10), 4, world=2, rank=2)


def test_init_and_calibration_batches_come_trimmed_from_the_sampler():
    from quant.train.loop import TrainConfig
    from quant.train.runtime import length_sampler, shuffled_batches
    lengths = snippet_lengths(200)
    mask = (torch.arange(64)[None, :] < lengths[:, None]).long()  # right padding, (N, 64)
    data = {"input_ids": mask * 7, "attention_mask": mask, "labels": torch.zeros(200, dtype=torch.long)}
    cfg = TrainConfig(out="unused", batch_size=16, group_window=50)
    sampler = length_sampler(cfg, data, seed=5)
    per_pass = len(sampler)
    got = list(shuffled_batches(data, sampler, 2 * per_pass + 1))
    expect = sampler.batches(0) + sampler.batches(1) + sampler.batches(2)[:1]  # pass p = epoch p
    assert [b["attention_mask"].sum().item() for b in got] == [int(lengths[i].sum()) for i in expect]
    assert all(b["attention_mask"].shape[1] == int(lengths[i].max()) for b, i in zip(got, expect))
    assert padding_ratio(lengths, sampler.batches(0)) < 1.1
    assert LengthGroupedSampler(lengths, 16, window=0).batches(0) == length_sampler(
        TrainConfig(out="unused", batch_size=16, group_window=0), data, seed=0).batches(0)
