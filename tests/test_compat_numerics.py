"""The original's numerics in the compat names, each against an obvious loop written from the
original's documented formulas (independent of the vectorised code under test)."""
from __future__ import annotations

import math

import pytest
import torch

from compat_site import compat_site  # noqa: F401  (fixture)


def _cos(a, b):
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(3)
    embeddings = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    groups = torch.LongTensor([0, 1, 0, 2, 1, 0, 3, 2])  # group 3 has a single member
    return embeddings, groups


def test_distances_match_the_original_definitions(compat_site, batch):
    from quaterion.distances import Distance

    x, _ = batch
    y = x.flip(0)[:5]
    cosine = Distance.get_by_name(Distance.COSINE)
    for i in range(len(x)):
        for j in range(len(y)):
            c = _cos(x[i], y[j])
            assert math.isclose(cosine.similarity_matrix(x, y)[i, j], (c + 1) / 2, abs_tol=1e-9)
            assert math.isclose(cosine.distance_matrix(x, y)[i, j], (1 - c) / 2, abs_tol=1e-9)
            l1 = float((x[i] - y[j]).abs().sum())
            l2 = float(((x[i] - y[j]) ** 2).sum().sqrt())
            dot = float((x[i] * y[j]).sum())
            assert math.isclose(Distance.get_by_name("manhattan").distance_matrix(x, y)[i, j], l1, rel_tol=1e-9)
            assert math.isclose(Distance.get_by_name("manhattan").similarity_matrix(x, y)[i, j], 1 / (1 + l1), rel_tol=1e-9)
            assert math.isclose(Distance.get_by_name("euclidean").distance_matrix(x, y)[i, j], l2, rel_tol=1e-6)
            assert math.isclose(Distance.get_by_name("dot_product").distance_matrix(x, y)[i, j], -dot, rel_tol=1e-9)
    # row-wise cosine distance is 1 - cos (0..2), as in the original
    row = cosine.distance(x[:5], y)
    assert all(math.isclose(row[i], 1 - _cos(x[i], y[i]), abs_tol=1e-9) for i in range(5))
    with pytest.raises(ValueError, match="Unrecognized distance name"):
        Distance.get_by_name("hamming")


def test_mnrl_logits_are_scale_times_shifted_cosine(compat_site, batch):
    from quaterion.loss import MultipleNegativesRankingLoss

    x, _ = batch
    pairs = torch.LongTensor([[0, 4], [1, 5], [2, 6], [3, 7]])
    for symmetric in (False, True):
        loss = MultipleNegativesRankingLoss(scale=20.0, symmetric=symmetric)(x, pairs, torch.ones(4), torch.zeros(8))
        n = len(pairs)
        logits = [[20.0 * (_cos(x[pairs[i, 0]], x[pairs[j, 1]]) + 1) / 2 for j in range(n)] for i in range(n)]

        def ce(rows):
            return sum(-rows[i][i] + math.log(sum(math.exp(v) for v in rows[i])) for i in range(n)) / n

        expected = ce(logits)
        if symmetric:
            expected = (expected + ce([list(col) for col in zip(*logits)])) / 2
        assert math.isclose(float(loss), expected, rel_tol=1e-9)
    with pytest.raises(ValueError, match="score=1"):
        MultipleNegativesRankingLoss()(x, pairs, torch.Tensor([1, 0, 1, 1]), torch.zeros(8))


def _cos_dist(x, i, j):
    return (1 - _cos(x[i], x[j])) / 2


def test_triplet_hard_mining_divides_by_mean_negative(compat_site, batch):
    from quaterion.loss import TripletLoss

    x, g = batch
    n = len(x)
    hardest_pos, hardest_neg = [], []
    for a in range(n):
        pos = [_cos_dist(x, a, p) for p in range(n) if p != a and g[p] == g[a]]
        neg = [_cos_dist(x, a, q) for q in range(n) if g[q] != g[a]]
        hardest_pos.append(max(pos) if pos else 0.0)  # an anchor without positive counts with 0
        hardest_neg.append(min(neg))
    mean_neg = sum(hardest_neg) / n
    expected = sum(max(0.0, (p - q) / mean_neg + 0.5) for p, q in zip(hardest_pos, hardest_neg)) / n
    assert math.isclose(float(TripletLoss(margin=0.5, mining="hard")(x, g)), expected, rel_tol=1e-9)
    soft = sum(math.log1p(math.exp(p - q)) for p, q in zip(hardest_pos, hardest_neg)) / n
    assert math.isclose(float(TripletLoss(mining="hard", soft=True)(x, g)), soft, rel_tol=1e-9)


def test_triplet_all_and_semi_hard(compat_site, batch):
    from quaterion.loss import TripletLoss

    x, g = batch
    n = len(x)
    values = []
    for a in range(n):
        for p in range(n):
            for q in range(n):
                if len({a, p, q}) == 3 and g[a] == g[p] and g[a] != g[q]:
                    values.append(max(0.0, _cos_dist(x, a, p) - _cos_dist(x, a, q) + 0.5))
    active = sum(1 for v in values if v > 1e-16)
    assert math.isclose(float(TripletLoss(mining="all")(x, g)), sum(values) / (active + 1e-16), rel_tol=1e-9)
    # semi-hard: every (same-group entry, other-group entry) of the distance matrix, diagonal included
    pos = [_cos_dist(x, i, j) for i in range(n) for j in range(n) if g[i] == g[j]]
    neg = [_cos_dist(x, i, j) for i in range(n) for j in range(n) if g[i] != g[j]]
    semi = sum(min(max(p - q + 0.5, 0.0), 0.5) for p in pos for q in neg) / (len(pos) * len(neg))
    assert math.isclose(float(TripletLoss(mining="semi_hard")(x, g)), semi, rel_tol=1e-9)
    with pytest.raises(ValueError, match="Unrecognized mining"):
        TripletLoss(mining="easy")


def test_triplet_xbm_loss_uses_the_memory(compat_site, batch):
    from quaterion.loss import TripletLoss

    x, g = batch
    loss = TripletLoss(mining="hard")
    memory, memory_groups = x.flip(0) * 2, g.flip(0)
    assert torch.allclose(loss.xbm_loss(x, g, memory, memory_groups), loss._hard_triplet_loss(x, g, memory, memory_groups))
    assert float(loss.xbm_loss(x, g, memory[:0], memory_groups[:0])) == 0.0


def test_contrastive_with_and_without_subgroups(compat_site, batch):
    from quaterion.loss import ContrastiveLoss

    x, _ = batch
    pairs = torch.LongTensor([[0, 4], [1, 5], [2, 6], [3, 7]])
    labels = torch.Tensor([1, 0, 1, 0]).double()
    margin = 0.5
    per_pair = []
    for (a, b), y in zip(pairs.tolist(), labels.tolist()):
        d = 1 - _cos(x[a], x[b])  # row-wise cosine distance
        per_pair.append(0.5 * (y * d * d + (1 - y) * max(0.0, margin - d) ** 2))
    loss = ContrastiveLoss(margin=margin)
    assert math.isclose(float(loss(x, pairs, labels, torch.zeros(8))), sum(per_pair) / 4, rel_tol=1e-9)
    assert math.isclose(float(ContrastiveLoss(size_average=False)(x, pairs, labels, torch.zeros(8))), sum(per_pair), rel_tol=1e-9)
    subgroups = torch.Tensor([0, 0, 1, 1, 0, 0, 1, 1])
    closest = [min(_cos_dist(x, i, j) for j in range(8) if subgroups[j] != subgroups[i]) for i in range(8)]
    extra = [max(0.0, margin - closest[a]) ** 2 + max(0.0, margin - closest[b]) ** 2 for a, b in pairs.tolist()]
    expected = sum(p + e for p, e in zip(per_pair, extra)) / 4
    assert math.isclose(float(loss(x, pairs, labels, subgroups)), expected, rel_tol=1e-9)


def test_online_contrastive(compat_site, batch):
    from quaterion.loss import OnlineContrastiveLoss

    x, g = batch
    n, margin = len(x), 0.5
    d = [[_cos_dist(x, i, j) for j in range(n)] for i in range(n)]
    positive = [[i != j and g[i] == g[j] for j in range(n)] for i in range(n)]
    pos_all = [d[i][j] for i in range(n) for j in range(n) if positive[i][j]]
    neg_all = [d[i][j] for i in range(n) for j in range(n) if not positive[i][j]]
    expected_all = 0.5 * (sum(pos_all) / len(pos_all) + sum(max(0.0, margin - v) for v in neg_all) / len(neg_all))
    assert math.isclose(float(OnlineContrastiveLoss(mining="all")(x, g)), expected_all, rel_tol=1e-9)
    hard_pos = [max([d[i][j] for j in range(n) if positive[i][j]], default=0.0) for i in range(n)]
    hard_neg = [min(d[i][j] for j in range(n) if not positive[i][j]) for i in range(n)]
    expected_hard = 0.5 * (sum(hard_pos) / sum(1 for v in hard_pos if v != 0)
                           + sum(max(0.0, margin - v) for v in hard_neg) / n)
    assert math.isclose(float(OnlineContrastiveLoss(mining="hard")(x, g)), expected_hard, rel_tol=1e-9)


def _ranking(dist_row, exclude):
    return sorted((j for j in range(len(dist_row)) if j != exclude), key=lambda j: dist_row[j])


def test_pair_metrics_against_loops(compat_site):
    from quaterion.distances import Distance
    from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank

    gen = torch.Generator().manual_seed(7)
    x = torch.randn(10, 3, generator=gen)
    pairs = torch.LongTensor([[i, i + 5] for i in range(5)])
    labels, subgroups = torch.ones(5), torch.zeros(10)
    partner = {int(a): int(b) for a, b in pairs} | {int(b): int(a) for a, b in pairs}
    dist = Distance.get_by_name("manhattan").distance_matrix(x)
    ranks = [_ranking(dist[i].tolist(), i).index(partner[i]) + 1 for i in range(10)]
    rr = RetrievalReciprocalRank(Distance.MANHATTAN, reduce_func=None).compute(x, labels, pairs, subgroups)
    assert torch.allclose(rr, torch.tensor([1 / r for r in ranks]))
    for k in (1, 3):
        p = RetrievalPrecision(k, Distance.MANHATTAN).compute(x, labels, pairs, subgroups)
        assert math.isclose(float(p), sum((r <= k) / k for r in ranks) / 10, rel_tol=1e-6)
    # update over two batches then evaluate equals compute over the concatenation
    metric = RetrievalReciprocalRank(Distance.MANHATTAN)
    first = torch.cat([x[:2], x[5:7]])
    second = torch.cat([x[2:5], x[7:]])
    metric.update(first, torch.ones(2), torch.LongTensor([[0, 2], [1, 3]]), torch.zeros(4))
    metric.update(second, torch.ones(3), torch.LongTensor([[0, 3], [1, 4], [2, 5]]), torch.zeros(6))
    reordered = torch.cat([first, second])
    assert torch.allclose(metric.evaluate(), RetrievalReciprocalRank(Distance.MANHATTAN).compute(
        reordered, torch.ones(5), torch.LongTensor([[0, 2], [1, 3], [4, 7], [5, 8], [6, 9]]), torch.zeros(10)))
    metric.reset()
    assert metric.accumulator.embeddings.numel() == 0
    with pytest.raises(ValueError):
        RetrievalPrecision(k=0)


def test_r_precision_against_loop(compat_site, batch):
    from quaterion.eval.group import RetrievalRPrecision

    x, g = batch
    x = x.float()
    dist = (1 - torch.nn.functional.normalize(x) @ torch.nn.functional.normalize(x).T) / 2
    hits = slots = 0
    for i in range(len(x)):
        relevant = {j for j in range(len(x)) if j != i and g[j] == g[i]}
        top = _ranking(dist[i].tolist(), i)[: len(relevant)]
        hits += sum(j in relevant for j in top)
        slots += len(relevant)
    assert math.isclose(float(RetrievalRPrecision().compute(x, g)), hits / slots, rel_tol=1e-6)


def test_mask_utilities_against_loops(compat_site):
    from quaterion.utils import (get_anchor_negative_mask, get_anchor_positive_mask, get_masked_maximum,
                                 get_masked_minimum, get_triplet_mask, max_value_of_dtype, min_value_of_dtype)

    labels = torch.LongTensor([1, 2, 1, 3, 2])
    n = len(labels)
    triplet = get_triplet_mask(labels)
    for i in range(n):
        for j in range(n):
            assert bool(get_anchor_positive_mask(labels)[i, j]) == (i != j and labels[i] == labels[j])
            assert bool(get_anchor_negative_mask(labels)[i, j]) == (labels[i] != labels[j])
            for k in range(n):
                assert bool(triplet[i, j, k]) == (len({i, j, k}) == 3 and labels[i] == labels[j] != labels[k])
    other = torch.LongTensor([1, 3])
    assert get_anchor_positive_mask(labels, other).tolist() == [[l == o for o in other.tolist()] for l in labels.tolist()]
    dists = torch.tensor([[3.0, 1.0, 2.0], [0.5, 4.0, 1.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert get_masked_maximum(dists, mask).flatten().tolist() == [3.0, 1.0]
    assert get_masked_minimum(dists, mask).flatten().tolist() == [2.0, 1.0]
    assert max_value_of_dtype(torch.float32) == torch.finfo(torch.float32).max
    assert min_value_of_dtype(torch.int64) == torch.iinfo(torch.int64).min
    with pytest.raises(TypeError):
        max_value_of_dtype(torch.bool)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4])
def test_iter_by_batch(compat_site, size):
    from torch.utils.data import Dataset, IterableDataset

    from quaterion.utils.utils import iter_by_batch

    items = list(range(size))
    expected = [items[i:i + 2] for i in range(0, size, 2)]

    class Indexed(Dataset):
        def __getitem__(self, i):
            return items[i]

        def __len__(self):
            return size

    class Streamed(IterableDataset):
        def __iter__(self):
            return iter(items)

    for data in (items, Indexed(), Streamed(), iter(items)):
        assert list(iter_by_batch(data, 2, log_progress=False)) == expected


def test_pytorch_metric_learning_wrapper(compat_site, batch):
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    from pytorch_metric_learning import miners

    from quaterion.loss import GroupLoss
    from quaterion.loss.extras import PytorchMetricLearningWrapper

    x, g = batch
    x = x.float()
    loss, miner = pml_losses.TripletMarginLoss(margin=0.2), miners.MultiSimilarityMiner()
    wrapped = PytorchMetricLearningWrapper(loss, miner)
    assert isinstance(wrapped, GroupLoss)
    assert torch.allclose(wrapped(x, g), loss(x, g, miner(x, g)))
    assert torch.allclose(PytorchMetricLearningWrapper(loss)(embeddings=x, groups=g), loss(x, g))


def _softmax_ce(logits_rows, targets):
    return sum(-row[t] + math.log(sum(math.exp(v) for v in row)) for row, t in zip(logits_rows, targets)) / len(targets)


def _unit(v):
    return v / v.norm()


@pytest.fixture
def proxy_batch():
    gen = torch.Generator().manual_seed(5)
    embeddings = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    groups = torch.LongTensor([0, 1, 2, 0, 1, 2, 2])
    return embeddings, groups


def test_arcface_cosface_softmax_against_loops(compat_site, proxy_batch):
    from quaterion.loss import ArcFaceLoss, CosFaceLoss, SoftmaxLoss

    x, g = proxy_batch
    for cls in (ArcFaceLoss, CosFaceLoss, SoftmaxLoss):
        loss = cls(4, 3).double()
        assert tuple(loss.kernel.shape) == (4, 3)  # the original's parameter layout
        with torch.no_grad():
            loss.kernel.copy_(torch.randn(4, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64))
        k = loss.kernel.detach()
        rows = []
        for i in range(len(x)):
            row = []
            for j in range(3):
                if cls is SoftmaxLoss:
                    row.append(float(x[i] @ k[:, j]) / 0.05)
                    continue
                c = max(-1.0, min(1.0, float(_unit(x[i]) @ _unit(k[:, j]))))
                target = j == int(g[i])
                if cls is ArcFaceLoss:
                    row.append(64.0 * math.cos(math.acos(c) + (0.5 if target else 0.0)))
                else:
                    row.append(64.0 * (c - (0.35 if target else 0.0)))
            rows.append(row)
        assert math.isclose(loss(x, g).item(), _softmax_ce(rows, g.tolist()), rel_tol=1e-7), cls.__name__
    with pytest.raises(ValueError, match="Invalid group ids"):
        ArcFaceLoss(4, 3)(x.float(), torch.LongTensor([0, 1, 3, 0, 1, 2, 2]))


def test_center_and_circle_against_loops(compat_site, proxy_batch):
    from quaterion.loss import CenterLoss, CircleLoss

    x, g = proxy_batch
    center = CenterLoss(4, 3, lambda_c=0.5).double()
    c = center.centers.detach()
    mse = sum(float(((_unit(x[i]) - c[g[i]]) ** 2).sum()) for i in range(len(x))) / (len(x) * 4)
    assert math.isclose(center(x, g).item(), 0.5 * mse, rel_tol=1e-9)

    m, gamma = 0.25, 256.0
    pos, neg = [], []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            s = (_cos(x[i], x[j]) + 1) / 2  # the original's cosine similarity matrix
            (pos if g[i] == g[j] else neg).append(s)
    lse = lambda vals: max(vals) + math.log(sum(math.exp(v - max(vals)) for v in vals))  # noqa: E731
    exp_p = [-max(0.0, 1 + m + s) * gamma * (s - (1 - m)) for s in pos]
    exp_n = [max(0.0, s - m) * gamma * (s - m) for s in neg]
    z = lse(exp_n) + lse(exp_p)
    expected = z + math.log1p(math.exp(-z)) if z > 30 else math.log1p(math.exp(z))
    assert math.isclose(float(CircleLoss(margin=m, scale_factor=gamma)(x, g)), expected, rel_tol=1e-7)
