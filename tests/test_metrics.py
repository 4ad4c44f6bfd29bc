"""Retrieval metrics (plugins/metrics/retrieval.py, base in core/metric.py).

Every object is a query against all the other objects of the batch; relevant objects are
those of the same group (group targets) or the other side of a positively scored pair (pair
targets). Queries without any relevant object are skipped in the mean.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simplug.errors import DataError
from simplug.registry import get_registry


def make(name, **kwargs):
    return get_registry().resolve("metrics", name)(**kwargs)


def precision(k, metric="euclidean"):
    return make("retrieval_precision", k=k, distance_metric_name=metric)


def reciprocal_rank(metric="euclidean"):
    return make("retrieval_reciprocal_rank", distance_metric_name=metric)


def value(metric, emb, targets):
    return float(metric.compute(emb, targets))


# --------------------------------------------------------------------------- hand cases
# Points on a line: 0, 1, 3, 7, 12, 40 (p0..p5). Distances between the first five:
#   p0-p1 1, p0-p2 3, p0-p3 7, p0-p4 12, p1-p2 2, p1-p3 6, p1-p4 11, p2-p3 4, p2-p4 9, p3-p4 5
# and p5 is at least 28 from everyone (farther than any other distance), so it is the last
# neighbour of every other point. Neighbours, nearest first (no ties anywhere):
#   p0: p1 p2 p3 p4 p5
#   p1: p0 p2 p3 p4 p5
#   p2: p1 p0 p3 p4 p5
#   p3: p2 p4 p1 p0 p5
#   p4: p3 p2 p1 p0 p5
LINE = torch.tensor([[0.0], [1.0], [3.0], [7.0], [12.0], [40.0]])


def test_hand_case_groups_on_a_line():
    # groups: p0 p1 p4 in group 0, p2 p3 in group 1, p5 alone in group 2 (skipped)
    targets = {"groups": torch.tensor([0, 0, 1, 1, 0, 2])}
    #          relevant   P@1  P@2  RR
    # p0: {p1, p4}         1   1/2  1      (p1 first; p4 at rank 4 does not add)
    # p1: {p0, p4}         1   1/2  1
    # p2: {p3}             0    0   1/3    (p1, p0, then p3)
    # p3: {p2}             1   1/2  1
    # p4: {p0, p1}         0    0   1/3    (p3, p2, then p1; p0 at rank 4 does not add)
    # p5: none -> skipped
    assert value(precision(1), LINE, targets) == pytest.approx(3 / 5)
    assert value(precision(2), LINE, targets) == pytest.approx((0.5 + 0.5 + 0 + 0.5 + 0) / 5)
    assert value(reciprocal_rank(), LINE, targets) == pytest.approx((1 + 1 + 1 / 3 + 1 + 1 / 3) / 5)
    # P@3: p0 {p1} 1/3, p1 {p0} 1/3, p2 {p3} 1/3, p3 {p2} 1/3, p4 {p1} 1/3
    assert value(precision(3), LINE, targets) == pytest.approx(1 / 3)


def test_hand_case_pairs_on_a_line():
    # pairs (p0, p1) and (p2, p3) positive; (p4, p5) scored 0 -> p4 and p5 have no relevant
    # object and are skipped
    targets = {
        "pairs": torch.tensor([[0, 1], [3, 2], [4, 5]]),
        "labels": torch.tensor([1.0, 1.0, 0.0]),
        "subgroups": torch.zeros(6, dtype=torch.long),
    }
    #          relevant   P@1  P@2  RR
    # p0: {p1}             1   1/2  1
    # p1: {p0}             1   1/2  1
    # p2: {p3}             0    0   1/3
    # p3: {p2}             1   1/2  1
    assert value(precision(1), LINE, targets) == pytest.approx(3 / 4)
    assert value(precision(2), LINE, targets) == pytest.approx(1.5 / 4)
    assert value(reciprocal_rank(), LINE, targets) == pytest.approx((3 + 1 / 3) / 4)


def test_hand_case_cosine_in_2d():
    # points at angles 0, 10, 30, 70, 120 degrees with different lengths (cosine ignores
    # length). Angle differences: 0-1 10, 0-2 30, 0-3 70, 0-4 120, 1-2 20, 1-3 60, 1-4 110,
    # 2-3 40, 2-4 90, 3-4 50, so neighbours nearest first:
    #   p0: p1 p2 p3 p4 | p1: p0 p2 p3 p4 | p2: p1 p0 p3 p4 | p3: p2 p4 p1 p0 | p4: p3 p2 p1 p0
    angles = torch.tensor([0.0, 10.0, 30.0, 70.0, 120.0]) * math.pi / 180
    radii = torch.tensor([1.0, 5.0, 0.5, 2.0, 3.0])
    emb = torch.stack([radii * torch.cos(angles), radii * torch.sin(angles)], dim=1)
    targets = {"groups": torch.tensor([0, 1, 1, 0, 1])}
    #          relevant   P@1  P@2  RR
    # p0: {p3}             0    0   1/3
    # p1: {p2, p4}         0   1/2  1/2
    # p2: {p1, p4}         1   1/2  1
    # p3: {p0}             0    0   1/4
    # p4: {p1, p2}         0   1/2  1/2
    assert value(precision(1, "cosine"), emb, targets) == pytest.approx(1 / 5)
    assert value(precision(2, "cosine"), emb, targets) == pytest.approx(1.5 / 5)
    assert value(reciprocal_rank("cosine"), emb, targets) == pytest.approx((1 / 3 + 1 / 2 + 1 + 1 / 4 + 1 / 2) / 5)


def test_reciprocal_rank_counts_only_first_relevant_hit():
    # query p0 at 0; p1 (relevant) at 1, p2 (relevant) at 2, p3 (other group) at 10
    emb = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    targets = {"groups": torch.tensor([0, 0, 0, 1])}
    # p0: p1 p2 p3 -> RR 1 | p1: p0/p2 tie at 1 -> both relevant, RR 1
    # p2: p1 p0 p3 -> RR 1 | p3: alone -> skipped
    assert value(reciprocal_rank(), emb, targets) == pytest.approx(1.0)
    # move the irrelevant point in front of p0's relevant ones
    emb2 = torch.tensor([[0.0], [3.0], [4.0], [-1.0]])
    # p0: p3 (d1), p1 (d3), p2 (d4) -> 1/2 (not 1/2 + 1/3)
    # p1: p2 (d1) -> 1 | p2: p1 (d1) -> 1
    assert value(reciprocal_rank(), emb2, targets) == pytest.approx((0.5 + 1 + 1) / 3)


def test_queries_without_relevant_objects_are_skipped():
    emb = LINE[:5]
    with_lone = {"groups": torch.tensor([0, 0, 7, 8, 9])}
    # only p0 and p1 have a relevant object; both find it first
    assert value(precision(1), emb, with_lone) == pytest.approx(1.0)
    assert value(reciprocal_rank(), emb, with_lone) == pytest.approx(1.0)
    # P@2: p0 -> {p1, p2} 1/2; p1 -> {p0, p2} 1/2; lone queries do not pull it to 1/5
    assert value(precision(2), emb, with_lone) == pytest.approx(0.5)


def test_no_query_with_relevant_object_gives_nan():
    out = precision(1).compute(LINE, {"groups": torch.arange(6)})
    assert math.isnan(float(out))


def test_query_never_retrieves_itself():
    # every point duplicated far away from the others: without excluding the query
    # itself it would be its own nearest neighbour (distance 0, not relevant)
    emb = torch.tensor([[0.0], [0.5], [10.0], [10.5]])
    targets = {"groups": torch.tensor([0, 0, 1, 1])}
    assert value(precision(1), emb, targets) == pytest.approx(1.0)
    assert value(reciprocal_rank(), emb, targets) == pytest.approx(1.0)


# --------------------------------------------------------------------------- k too large
def test_k_larger_than_candidates_raises_data_error():
    emb = LINE[:5]  # 5 objects -> 4 candidates per query
    targets = {"groups": torch.tensor([0, 0, 1, 1, 0])}
    with pytest.raises(DataError) as info:
        precision(5).compute(emb, targets)
    assert "lower k" in str(info.value)
    assert isinstance(info.value, ValueError)
    # k equal to the number of candidates is fine: P@4 = #relevant / 4
    # p0 2/4, p1 2/4, p2 1/4, p3 1/4, p4 2/4
    assert value(precision(4), emb, targets) == pytest.approx((2 + 2 + 1 + 1 + 2) / 4 / 5)


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_k_must_be_positive_int(bad):
    with pytest.raises(ValueError):
        make("retrieval_precision", k=bad)


# --------------------------------------------------------------------------- slow reference
def cosine_distances_np(emb):
    e = emb.double().numpy()
    n = len(e)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = 1.0 - float(e[i] @ e[j]) / (np.linalg.norm(e[i]) * np.linalg.norm(e[j]))
    return out


def ref_metrics(emb, rel, ks):
    """Slow per-query loop: rel[i][j] True when j is relevant to query i (i != j)."""
    d = cosine_distances_np(emb)
    n = len(d)
    prec = {k: [] for k in ks}
    rr = []
    for i in range(n):
        if not any(rel[i][j] for j in range(n) if j != i):
            continue
        order = sorted((j for j in range(n) if j != i), key=lambda j: d[i, j])
        for k in ks:
            prec[k].append(sum(rel[i][j] for j in order[:k]) / k)
        rank = next(r for r, j in enumerate(order, start=1) if rel[i][j])
        rr.append(1.0 / rank)
    return {k: float(np.mean(v)) for k, v in prec.items()}, float(np.mean(rr))


def check_against_reference(emb, targets, rel):
    ks = (1, 2, 3, 5)
    ref_prec, ref_rr = ref_metrics(emb, rel, ks)
    for k in ks:
        assert value(precision(k, "cosine"), emb, targets) == pytest.approx(ref_prec[k], abs=1e-6), k
    assert value(reciprocal_rank("cosine"), emb, targets) == pytest.approx(ref_rr, abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_groups_match_slow_reference(seed):
    g = torch.Generator().manual_seed(seed)
    n = 30
    emb = torch.randn(n, 6, generator=g)
    groups = torch.randint(0, 8, (n,), generator=g)
    groups[-1] = 99  # one lone query
    gl = groups.tolist()
    rel = [[i != j and gl[i] == gl[j] for j in range(n)] for i in range(n)]
    check_against_reference(emb, {"groups": groups}, rel)


@pytest.mark.parametrize("seed", range(4))
def test_pairs_match_slow_reference(seed):
    g = torch.Generator().manual_seed(seed)
    n = 24
    emb = torch.randn(n, 6, generator=g)
    # overlapping pairs, some scored 0, in both orientations
    a = torch.randint(0, n, (20,), generator=g)
    b = (a + torch.randint(1, n, (20,), generator=g)) % n  # b != a
    pairs = torch.stack([a, b], dim=1)
    labels = (torch.rand(20, generator=g) > 0.3).float()
    rel = [[False] * n for _ in range(n)]
    for (i, j), s in zip(pairs.tolist(), labels.tolist()):
        if s > 0:
            rel[i][j] = rel[j][i] = True
    targets = {"pairs": pairs, "labels": labels, "subgroups": torch.zeros(n, dtype=torch.long)}
    check_against_reference(emb, targets, rel)


# --------------------------------------------------------------------------- PML cross-check
@pytest.mark.parametrize("seed", range(3))
def test_precision_at_1_matches_pml_accuracy_calculator(seed):
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    g = torch.Generator().manual_seed(100 + seed)
    n = 50
    emb = torch.randn(n, 8, generator=g)
    groups = torch.randint(0, 10, (n,), generator=g)
    groups[-2:] = torch.tensor([1000, 1001])  # lone labels: skipped by both
    # this PML version takes the distance through a k-nearest-neighbour function
    calc = AccuracyCalculator(include=("precision_at_1",), k=1, knn_func=CustomKNN(CosineSimilarity()))
    expected = calc.get_accuracy(emb, groups, emb, groups, ref_includes_query=True)["precision_at_1"]
    got = value(precision(1, "cosine"), emb, {"groups": groups})
    assert got == pytest.approx(float(expected), abs=1e-6)
    assert 0.0 < got < 1.0  # not a degenerate agreement
