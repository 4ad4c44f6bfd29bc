"""The retrieval and pair metrics of the catalog against pytorch-metric-learning's
AccuracyCalculator, sklearn's roc_auc_score, slow obvious loops and hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simplug.errors import ConfigError, DataError
from simplug.components.ranking import nearest
from simplug.registry import get_registry

RETRIEVAL = ["retrieval_precision", "recall", "retrieval_reciprocal_rank", "retrieval_r_precision", "map_at_r"]


def make(name, **kwargs):
    return get_registry().resolve("metrics", name)(**kwargs)


def value(metric, emb, targets):
    return float(metric.compute(emb, targets))


# --------------------------------------------------------------------------- hand cases
# Points on a line 0, 1, 3, 7, 12, 40 (see test_metrics.py): neighbours, nearest first
#   p0: p1 p2 p3 p4 p5 | p1: p0 p2 p3 p4 p5 | p2: p1 p0 p3 p4 p5
#   p3: p2 p4 p1 p0 p5 | p4: p3 p2 p1 p0 p5
LINE = torch.tensor([[0.0], [1.0], [3.0], [7.0], [12.0], [40.0]])
GROUPS = {"groups": torch.tensor([0, 0, 1, 1, 0, 2])}


def test_hand_case_r_precision_map_at_r_and_recall():
    # query  relevant   R  ranked relevance (nearest first)  R-prec  AP@R                 hit@1 hit@2
    # p0     {p1, p4}   2  p1 1, p2 0, p3 0, p4 1             1/2     (1/1)/2 = 1/2        1     1
    # p1     {p0, p4}   2  p0 1, p2 0, ...                   1/2     1/2                  1     1
    # p2     {p3}       1  p1 0, p0 0, p3 1                   0       0                    0     0
    # p3     {p2}       1  p2 1                               1       1                    1     1
    # p4     {p0, p1}   2  p3 0, p2 0, p1 1, p0 1             0       0                    0     0
    # p5: alone, skipped
    assert value(make("retrieval_r_precision", distance_metric_name="euclidean"), LINE, GROUPS) == pytest.approx(2 / 5)
    assert value(make("map_at_r", distance_metric_name="euclidean"), LINE, GROUPS) == pytest.approx(2 / 5)
    assert value(make("recall", k=1, distance_metric_name="euclidean"), LINE, GROUPS) == pytest.approx(3 / 5)
    assert value(make("recall", k=2, distance_metric_name="euclidean"), LINE, GROUPS) == pytest.approx(3 / 5)
    # hit@3: p2 finds p3 third; p4 still misses (p3, p2, p1 -> p1 is relevant!) -> all 5
    assert value(make("recall", k=3, distance_metric_name="euclidean"), LINE, GROUPS) == pytest.approx(5 / 5)


def test_hand_case_map_at_r_rewards_order_within_r():
    # query q at 0 with R=3 relevant objects; the 3 nearest are rel, irrel, rel:
    # AP@R = (1/3) * (1/1 + 2/3) = 5/9 while R-precision = 2/3
    emb = torch.tensor([[0.0], [1.0], [2.0], [3.0], [100.0], [101.0]])
    targets = {"groups": torch.tensor([0, 0, 1, 0, 0, 2])}
    # p0: p1 r, p2 x, p3 r, p4 r | R=3 -> AP = (1 + 2/3)/3 = 5/9, Rp = 2/3
    # p1: p0 r / p2 x tie at 1 -> stable order by index: p0 (r) then p2 (x), then p3 r
    #     AP = (1 + 2/3)/3 = 5/9, Rp = 2/3
    # p3: p2 x, p1 r, p0 r -> AP = (1/2 + 2/3)/3 = 7/18, Rp = 2/3
    # p4: p5 x, p3 r, p2 x, p1 r -> top 3: x r x -> AP = (1/2)/3 = 1/6, Rp = 1/3
    # p2, p5: alone -> skipped
    m = make("map_at_r", distance_metric_name="euclidean")
    assert value(m, emb, targets) == pytest.approx((5 / 9 + 5 / 9 + 7 / 18 + 1 / 6) / 4)
    rp = make("retrieval_r_precision", distance_metric_name="euclidean")
    assert value(rp, emb, targets) == pytest.approx((2 / 3 + 2 / 3 + 2 / 3 + 1 / 3) / 4)


def test_ties_are_broken_by_index():
    # q at 0, a relevant object and an irrelevant one both at distance 1: the lower index wins
    first_irrelevant = torch.tensor([[0.0], [-1.0], [1.0]])
    assert value(make("recall", k=1, distance_metric_name="euclidean"), first_irrelevant, {"groups": torch.tensor([0, 1, 0])}) == 0.5
    # p0: p1 (x) before p2 (r) -> miss; p2: p0 (r) at 1 -> hit (p1 at 2) -> 1/2
    assert value(make("recall", k=1, distance_metric_name="euclidean"), first_irrelevant, {"groups": torch.tensor([0, 0, 1])}) == 1.0


def test_hand_case_pair_auc_and_accuracy():
    # similarities under dot product of 1-D embeddings: pair (a, b) scores a*b
    emb = torch.tensor([[1.0], [0.9], [1.0], [0.5], [1.0], [0.7], [1.0], [0.2]])
    pairs = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]])  # scores 0.9, 0.5, 0.7, 0.2
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    targets = {"pairs": pairs, "labels": labels}
    # positives 0.9 and 0.7 both above negatives 0.5 and 0.2: AUC 1, best accuracy 1
    assert value(make("pair_auc", distance_metric_name="dot_product"), emb, targets) == 1.0
    acc = make("pair_accuracy", distance_metric_name="dot_product")
    assert value(acc, emb, targets) == 1.0
    assert 0.5 < acc.best_threshold < 0.7
    # swap one label: positives 0.9, 0.5 vs negatives 0.7, 0.2 -> 3 of 4 orderings right
    targets2 = {"pairs": pairs, "labels": torch.tensor([1.0, 1.0, 0.0, 0.0])}
    assert value(make("pair_auc", distance_metric_name="dot_product"), emb, targets2) == pytest.approx(3 / 4)
    # best cut: above 0.8 -> {0.9} right, 0.5 wrong, 0.7 and 0.2 right -> 3/4
    assert value(make("pair_accuracy", distance_metric_name="dot_product"), emb, targets2) == pytest.approx(3 / 4)
    # a given threshold 0.6: 0.9 r, 0.5 wrong (positive below), 0.7 wrong, 0.2 r -> 1/2
    fixed = make("pair_accuracy", threshold=0.6, distance_metric_name="dot_product")
    assert value(fixed, emb, targets2) == pytest.approx(1 / 2)


def test_pair_metrics_need_both_classes_in_a_batch():
    emb = torch.randn(4, 3)
    targets = {"pairs": torch.tensor([[0, 1], [2, 3]]), "labels": torch.tensor([1.0, 1.0])}
    assert math.isnan(value(make("pair_auc"), emb, targets))


# --------------------------------------------------------------------------- k too large
@pytest.mark.parametrize("name", ["recall", "retrieval_precision"])
def test_k_larger_than_the_candidate_set_names_both(name):
    with pytest.raises(DataError, match=r"k=6 .*only 5"):
        make(name, k=6).compute(torch.randn(6, 3), {"groups": torch.tensor([0, 0, 1, 1, 2, 2])})


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_k_must_be_a_positive_int(bad):
    with pytest.raises(ConfigError, match="k must be a positive int"):
        make("recall", k=bad)


def test_threshold_must_be_a_number():
    with pytest.raises(ConfigError, match="threshold"):
        make("pair_accuracy", threshold="high")


# --------------------------------------------------------------------------- nearest()
@pytest.mark.parametrize("seed", range(3))
def test_nearest_equals_a_stable_sort_with_many_ties(seed):
    g = torch.Generator().manual_seed(seed)
    d = torch.randint(0, 6, (20, 300), generator=g).double()  # heavy ties
    full = torch.sort(d, dim=1, stable=True).indices
    for depth in (1, 2, 7, 40, 74, 75, 150, 300):
        assert torch.equal(nearest(d, depth), full[:, :depth]), depth


# --------------------------------------------------------------------------- slow reference
def slow_retrieval(emb, rel, distance):
    """Every metric by a per-query loop over a sorted list (ties by index)."""
    d = distance.distance_matrix(emb.double(), emb.double()).numpy()
    n = len(d)
    out = {name: [] for name in ("p1", "p3", "hit1", "hit3", "rr", "rp", "map")}
    for i in range(n):
        relevant = [j for j in range(n) if j != i and rel[i][j]]
        if not relevant:
            continue
        order = sorted((j for j in range(n) if j != i), key=lambda j: (d[i, j], j))
        flags = [1 if rel[i][j] else 0 for j in order]
        r = len(relevant)
        out["p1"].append(sum(flags[:1]) / 1)
        out["p3"].append(sum(flags[:3]) / 3)
        out["hit1"].append(float(any(flags[:1])))
        out["hit3"].append(float(any(flags[:3])))
        out["rr"].append(1.0 / (flags.index(1) + 1))
        out["rp"].append(sum(flags[:r]) / r)
        ap, hits = 0.0, 0
        for pos, f in enumerate(flags[:r], start=1):
            if f:
                hits += 1
                ap += hits / pos
        out["map"].append(ap / r)
    return {k: float(np.mean(v)) for k, v in out.items()}


def check_all(emb, targets, rel, distance_name):
    distance = get_registry().resolve("distances", distance_name)()
    ref = slow_retrieval(emb, rel, distance)
    got = {
        "p1": make("retrieval_precision", k=1, distance_metric_name=distance_name),
        "p3": make("retrieval_precision", k=3, distance_metric_name=distance_name),
        "hit1": make("recall", k=1, distance_metric_name=distance_name),
        "hit3": make("recall", k=3, distance_metric_name=distance_name),
        "rr": make("retrieval_reciprocal_rank", distance_metric_name=distance_name),
        "rp": make("retrieval_r_precision", distance_metric_name=distance_name),
        "map": make("map_at_r", distance_metric_name=distance_name),
    }
    for key, metric in got.items():
        assert value(metric, emb.double(), targets) == pytest.approx(ref[key], abs=1e-6), key


@pytest.mark.parametrize("distance_name", ["cosine", "euclidean", "manhattan", "dot_product"])
def test_groups_match_a_slow_loop(distance_name):
    g = torch.Generator().manual_seed(7)
    n = 40
    emb = torch.randn(n, 5, generator=g)
    emb[5] = emb[9]  # an exact tie
    groups = torch.randint(0, 6, (n,), generator=g)
    groups[-1] = 99
    gl = groups.tolist()
    rel = [[i != j and gl[i] == gl[j] for j in range(n)] for i in range(n)]
    check_all(emb, {"groups": groups}, rel, distance_name)


def test_pairs_match_a_slow_loop():
    g = torch.Generator().manual_seed(3)
    n = 30
    emb = torch.randint(-2, 3, (n, 3), generator=g).double()  # many ties
    a = torch.randint(0, n, (25,), generator=g)
    b = (a + torch.randint(1, n, (25,), generator=g)) % n
    pairs = torch.stack([a, b], dim=1)
    labels = (torch.rand(25, generator=g) > 0.3).double()
    rel = [[False] * n for _ in range(n)]
    for (i, j), s in zip(pairs.tolist(), labels.tolist()):
        if s > 0:
            rel[i][j] = rel[j][i] = True
    check_all(emb, {"pairs": pairs, "labels": labels}, rel, "euclidean")


# --------------------------------------------------------------------------- PML cross-check
@pytest.mark.parametrize("seed", range(3))
def test_against_pml_accuracy_calculator(seed):
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    g = torch.Generator().manual_seed(200 + seed)
    n = 80
    emb = torch.randn(n, 8, generator=g)
    groups = torch.randint(0, 8, (n,), generator=g)
    groups[-2:] = torch.tensor([1000, 1001])  # lone labels: skipped by both
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(CosineSimilarity()),
    )
    expected = calc.get_accuracy(emb, groups, emb, groups, ref_includes_query=True)
    targets = {"groups": groups}
    pairs = [
        ("precision_at_1", make("recall", k=1)),
        ("precision_at_1", make("retrieval_precision", k=1)),
        ("r_precision", make("retrieval_r_precision")),
        ("mean_average_precision_at_r", make("map_at_r")),
    ]
    for pml_name, metric in pairs:
        got = value(metric, emb, targets)
        assert got == pytest.approx(float(expected[pml_name]), abs=1e-6), pml_name
        assert 0.0 < got < 1.0


# --------------------------------------------------------------------------- sklearn AUC
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("quantize", [False, True])
def test_pair_auc_matches_sklearn(seed, quantize):
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(seed)
    n_pairs = 60
    emb = torch.randn(2 * n_pairs, 4, generator=g).double()
    if quantize:  # many tied similarities
        emb = torch.round(emb)
    pairs = torch.stack([torch.arange(n_pairs), torch.arange(n_pairs, 2 * n_pairs)], dim=1)
    labels = (torch.rand(n_pairs, generator=g) > 0.5).double()
    metric = make("pair_auc", distance_metric_name="dot_product")
    sims = (emb[:n_pairs] * emb[n_pairs:]).sum(dim=1)
    expected = roc_auc_score(labels.numpy(), sims.numpy())
    assert value(metric, emb, {"pairs": pairs, "labels": labels}) == pytest.approx(expected, abs=1e-6)


def slow_best_accuracy(sims, positive):
    candidates = sorted(set(sims)) + [min(sims) - 1.0]
    best = 0.0
    for t in candidates:  # predict positive when s > t
        best = max(best, np.mean([(s > t) == p for s, p in zip(sims, positive)]))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_pair_accuracy_matches_a_threshold_sweep(seed):
    g = torch.Generator().manual_seed(seed)
    n_pairs = 50
    emb = torch.round(torch.randn(2 * n_pairs, 3, generator=g) * 2).double()
    pairs = torch.stack([torch.arange(n_pairs), torch.arange(n_pairs, 2 * n_pairs)], dim=1)
    labels = (torch.rand(n_pairs, generator=g) > 0.4).double()
    sims = (emb[:n_pairs] * emb[n_pairs:]).sum(dim=1).tolist()
    positive = (labels > 0).tolist()
    metric = make("pair_accuracy", distance_metric_name="dot_product")
    got = value(metric, emb, {"pairs": pairs, "labels": labels})
    assert got == pytest.approx(slow_best_accuracy(sims, positive), abs=1e-6)
    # the reported threshold gives that accuracy
    t = metric.best_threshold
    assert np.mean([(s > t) == p for s, p in zip(sims, positive)]) == pytest.approx(got)
    fixed = make("pair_accuracy", threshold=0.5, distance_metric_name="dot_product")
    expected_fixed = np.mean([(s > 0.5) == p for s, p in zip(sims, positive)])
    assert value(fixed, emb, {"pairs": pairs, "labels": labels}) == pytest.approx(expected_fixed)


def test_pair_metrics_on_group_batches_use_every_pair():
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(1)
    emb = torch.randn(12, 3, generator=g).double()
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    sims, pos = [], []
    for i in range(12):
        for j in range(i + 1, 12):
            sims.append(float(emb[i] @ emb[j]))
            pos.append(int(groups[i] == groups[j]))
    got = value(make("pair_auc", distance_metric_name="dot_product"), emb, {"groups": groups})
    assert got == pytest.approx(roc_auc_score(pos, sims), abs=1e-6)


def test_every_metric_is_registered_and_listed():
    names = set(get_registry().names("metrics"))
    assert {"retrieval_precision", "retrieval_reciprocal_rank", "retrieval_r_precision", "recall", "map_at_r", "map@r",
            "pair_accuracy", "pair_auc"} <= names


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_cuda_equal_cpu():
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(60, 6, generator=g)
    groups = torch.randint(0, 5, (60,), generator=g)
    for name, args in [("retrieval_precision", {"k": 2}), ("recall", {"k": 1}), ("retrieval_reciprocal_rank", {}),
                       ("retrieval_r_precision", {}), ("map_at_r", {}), ("pair_auc", {}), ("pair_accuracy", {})]:
        metric = make(name, **args)
        cpu = value(metric, emb, {"groups": groups})
        cuda = value(metric, emb.cuda(), {"groups": groups.cuda()})
        assert cuda == pytest.approx(cpu, abs=1e-5), name
