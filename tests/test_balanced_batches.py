"""Balanced m-per-group batches and the warning for batches without positive pairs."""
from __future__ import annotations

import warnings
from collections import Counter

import pytest
import torch

from simplug import GroupSimilarityDataLoader, SimilarityGroupSample
from simplug.data import loaders
from simplug.data.loaders import GroupBalancedBatchSampler
from simplug.errors import DataError

# 6 groups of uneven size, one of them smaller than m and one a single item
SIZES = {0: 40, 1: 12, 2: 9, 3: 8, 4: 3, 5: 1}
GROUPS = [g for g, n in SIZES.items() for _ in range(n)]


def epoch(sampler: GroupBalancedBatchSampler) -> list[list[int]]:
    return [list(b) for b in sampler]


def test_every_batch_has_m_items_of_each_chosen_group():
    sampler = GroupBalancedBatchSampler(GROUPS, batch_size=16, m_per_group=4, seed=1)
    batches = epoch(sampler)
    assert len(batches) == len(sampler) == -(-len(GROUPS) // 16)
    for batch in batches:
        assert len(set(batch)) == len(batch)  # no item twice in a batch
        per_group = Counter(GROUPS[i] for i in batch)
        assert len(per_group) == 4  # 16 // 4 distinct groups
        for group, count in per_group.items():
            assert count == min(4, SIZES[group])


def test_small_groups_give_all_their_items_and_many_groups_are_visited():
    sampler = GroupBalancedBatchSampler(GROUPS, batch_size=16, m_per_group=4, seed=0)
    seen = Counter()
    for _ in range(20):
        for batch in sampler:
            seen.update(GROUPS[i] for i in batch)
    # uniform over groups: the 3-item group is drawn about as often as the 40-item one
    draws = {g: seen[g] / min(4, SIZES[g]) for g in SIZES}
    assert min(draws.values()) > 0.5 * max(draws.values())


def test_proportional_group_sampling_follows_group_sizes():
    sampler = GroupBalancedBatchSampler(GROUPS, batch_size=4, m_per_group=2, seed=0, group_sampling="proportional")
    chosen = Counter()
    for _ in range(300):
        for batch in sampler:
            chosen.update({GROUPS[i] for i in batch})
    # the 40-item group is drawn far more often than the 8-item one, unlike uniform sampling
    assert chosen[0] > 2 * chosen[3]
    with pytest.raises(DataError, match="group_sampling must be"):
        GroupBalancedBatchSampler(GROUPS, batch_size=4, m_per_group=2, group_sampling="by_size")


def test_items_of_a_group_cycle_before_repeating():
    sampler = GroupBalancedBatchSampler(GROUPS, batch_size=8, m_per_group=4, seed=3)
    taken = [i for batch in sampler for i in batch if GROUPS[i] == 0]
    first_cycle = taken[: SIZES[0]]
    assert len(set(first_cycle)) == len(first_cycle)


def test_deterministic_with_seed_and_new_order_each_epoch():
    a = GroupBalancedBatchSampler(GROUPS, batch_size=16, m_per_group=4, seed=7)
    b = GroupBalancedBatchSampler(GROUPS, batch_size=16, m_per_group=4, seed=7)
    c = GroupBalancedBatchSampler(GROUPS, batch_size=16, m_per_group=4, seed=8)
    first, second = epoch(a), epoch(a)
    assert first == epoch(b) and second == epoch(b)
    assert first != second
    assert first != epoch(c)
    a.set_epoch(1)
    assert epoch(a) == second


def test_ranks_take_disjoint_shares_of_one_global_order(monkeypatch):
    single = epoch(GroupBalancedBatchSampler(GROUPS, batch_size=8, m_per_group=2, seed=5))
    per_rank = []
    for rank in range(2):
        sampler = GroupBalancedBatchSampler(GROUPS, batch_size=8, m_per_group=2, seed=5)
        monkeypatch.setattr(loaders, "rank_and_world", lambda r=rank: (r, 2))
        per_rank.append(epoch(sampler))
        assert len(per_rank[-1]) == len(sampler)
    assert len(per_rank[0]) == len(per_rank[1])
    # rank r gets global batches r, r + 2, ...: no batch is shared, none is lost
    interleaved = [b for pair in zip(*per_rank) for b in pair]
    assert interleaved[: len(single)] == single
    assert not {tuple(b) for b in per_rank[0]} & {tuple(b) for b in per_rank[1]}


def test_loader_yields_balanced_batches_and_plain_loader_is_unchanged():
    data = [SimilarityGroupSample(obj=[float(i)], group=g) for i, g in enumerate(GROUPS)]
    loader = GroupSimilarityDataLoader(data, batch_size=12, m_per_group=3, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader)
    for records, targets in batches:
        counts = Counter(targets["groups"].tolist())
        assert len(counts) == 4 and all(c == min(3, SIZES[g]) for g, c in counts.items())
        assert [GROUPS[int(r[0])] for r in records] == targets["groups"].tolist()
    plain = GroupSimilarityDataLoader(data, batch_size=12)
    assert [t["groups"].tolist() for _, t in plain][0] == GROUPS[:12]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=8, m_per_group=1), "m_per_group must be an int >= 2"),
        (dict(batch_size=6, m_per_group=4), "batch_size >= 8"),
        (dict(batch_size=8, m_per_group=2, shuffle=True), "shuffle cannot be given"),
    ],
)
def test_bad_balanced_settings_are_named(kwargs, message):
    data = [SimilarityGroupSample(obj=[0.0], group=g) for g in GROUPS]
    with pytest.raises(DataError, match=message):
        GroupSimilarityDataLoader(data, **kwargs)


def test_group_loss_warns_rarely_about_batches_without_positive_pairs():
    from simplug.plugins.losses.triplet import TripletLoss

    loss = TripletLoss()
    embeddings = torch.randn(4, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(12):
            loss(embeddings, torch.arange(4))  # four singletons
        loss(embeddings, groups=torch.tensor([0, 0, 1, 1]))
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 2  # the 1st and the 10th, not twelve
    assert "m_per_group" in messages[0] and "10 batch(es)" in messages[1]
    assert loss.batches_without_positives == 12


def _rank_batches(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import json

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        sampler = GroupBalancedBatchSampler(GROUPS, batch_size=8, m_per_group=2, seed=5)
        with open(f"{out_dir}/rank{rank}.json", "w") as fh:
            json.dump({"len": len(sampler), "batches": [list(b) for b in sampler]}, fh)
    finally:
        dist.destroy_process_group()


def test_real_gloo_ranks_read_their_rank_and_split_the_batches(tmp_path):
    import json

    import torch.multiprocessing as mp

    mp.spawn(_rank_batches, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    single = epoch(GroupBalancedBatchSampler(GROUPS, batch_size=8, m_per_group=2, seed=5))
    assert ranks[0]["len"] == ranks[1]["len"] == len(ranks[0]["batches"])
    interleaved = [b for pair in zip(ranks[0]["batches"], ranks[1]["batches"]) for b in pair]
    assert interleaved[: len(single)] == single
