"""Built-in losses, resolved by registered name, against independent references.

Values and gradients w.r.t. the embeddings are compared. References use explicit Python
loops over anchors / positives / negatives and distances written from their definitions,
or pytorch-metric-learning where it computes the same quantity.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from simplug.registry import get_registry

TOL = dict(rtol=1e-5, atol=1e-6)


def make(name, **kwargs):
    return get_registry().resolve("losses", name)(**kwargs)


# --------------------------------------------------------------------------- helpers
def ref_dist(name, u, v):
    """Distance between two 1-D tensors from the definition (keeps autograd)."""
    if name == "cosine":
        return 1.0 - (u * v).sum() / (torch.sqrt((u * u).sum()) * torch.sqrt((v * v).sum()))
    if name == "euclidean":
        return torch.sqrt(((u - v) ** 2).sum())
    raise AssertionError(name)


def ref_cos_sim(u, v):
    return (u * v).sum() / (torch.sqrt((u * u).sum()) * torch.sqrt((v * v).sum()))


def dist_table(name, emb):
    n = len(emb)
    return [[ref_dist(name, emb[i], emb[j]) if i != j else None for j in range(n)] for i in range(n)]


def value_and_grad(fn, emb):
    e = emb.detach().clone().requires_grad_(True)
    value = fn(e)
    (grad,) = torch.autograd.grad(value, e)
    return value.detach(), grad


def assert_same_value_and_grad(fn_under_test, fn_reference, emb):
    v1, g1 = value_and_grad(fn_under_test, emb)
    v2, g2 = value_and_grad(fn_reference, emb)
    assert v1.dim() == 0
    torch.testing.assert_close(v1, v2, **TOL)
    torch.testing.assert_close(g1, g2, **TOL)
    return v1


def group_batch(seed, n=10, d=4, n_groups=3):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64)
    groups = torch.randint(0, n_groups, (n,), generator=g)
    groups[:n_groups] = torch.arange(n_groups)  # every group present
    groups[n_groups] = 0  # at least one group with two members
    return emb, groups


def pair_batch(seed, n_pairs=6, d=5, scores=None, subgroups=None):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(2 * n_pairs, d, generator=g, dtype=torch.float64)
    # pairs in a shuffled layout, not simply (i, i + N)
    perm = torch.randperm(2 * n_pairs, generator=g)
    pairs = perm.view(n_pairs, 2).clone()
    labels = torch.ones(n_pairs, dtype=torch.float64) if scores is None else torch.as_tensor(scores, dtype=torch.float64)
    sub = torch.zeros(2 * n_pairs, dtype=torch.long) if subgroups is None else torch.as_tensor(subgroups)
    return emb, pairs, labels, sub


# --------------------------------------------------------------------------- triplet refs
def ref_triplet(emb, groups, metric, margin, mining, soft=False):
    """Slow triplet loss following the docstring of plugins/losses/triplet.py."""
    n = len(emb)
    g = groups.tolist()
    D = dist_table(metric, emb)

    def hinge(x):
        return F.softplus(x) if soft else torch.relu(x + margin)

    def pos(a):
        return [p for p in range(n) if p != a and g[p] == g[a]]

    def neg(a):
        return [q for q in range(n) if g[q] != g[a]]

    def val(t):
        return t.detach().item()

    terms = []
    if mining == "all":
        for a in range(n):
            for p in pos(a):
                for q in neg(a):
                    t = hinge(D[a][p] - D[a][q])
                    if val(t) > 0:  # average over non-zero triplets only
                        terms.append(t)
    elif mining == "hard":
        for a in range(n):
            P, N = pos(a), neg(a)
            if not P or not N:
                continue
            far_p = max(P, key=lambda p: val(D[a][p]))
            near_n = min(N, key=lambda q: val(D[a][q]))
            terms.append(hinge(D[a][far_p] - D[a][near_n]))
    elif mining == "semi_hard":
        for a in range(n):
            N = neg(a)
            if not N:
                continue
            for p in pos(a):
                farther = [q for q in N if val(D[a][q]) > val(D[a][p])]
                if farther:
                    chosen = min(farther, key=lambda q: val(D[a][q]))
                else:
                    chosen = max(N, key=lambda q: val(D[a][q]))
                terms.append(hinge(D[a][p] - D[a][chosen]))
    else:
        raise AssertionError(mining)
    if not terms:
        return emb.sum() * 0.0
    return torch.stack(terms).mean()


# --------------------------------------------------------------------------- triplet tests
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_triplet_all_euclidean_matches_pml(seed, margin):
    from pytorch_metric_learning import distances, losses

    emb, groups = group_batch(seed, n=12, d=3)
    pml = losses.TripletMarginLoss(margin=margin, distance=distances.LpDistance(normalize_embeddings=False))
    ours = make("triplet", margin=margin, distance_metric_name="euclidean", mining="all")
    value = assert_same_value_and_grad(lambda e: ours(e, groups), lambda e: pml(e, groups), emb)
    assert float(value) > 0  # the comparison is not vacuous


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("mining", ["all", "hard", "semi_hard"])
def test_triplet_matches_slow_reference(seed, metric, mining):
    margin = 0.3 if metric == "cosine" else 1.0
    emb, groups = group_batch(seed)
    ours = make("triplet", margin=margin, distance_metric_name=metric, mining=mining)
    value = assert_same_value_and_grad(
        lambda e: ours(e, groups), lambda e: ref_triplet(e, groups, metric, margin, mining), emb
    )
    assert float(value) > 0


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("mining", ["all", "hard", "semi_hard"])
def test_triplet_soft_matches_slow_reference(seed, mining):
    emb, groups = group_batch(seed)
    ours = make("triplet", margin=0.5, distance_metric_name="cosine", mining=mining, soft=True)
    assert_same_value_and_grad(
        lambda e: ours(e, groups), lambda e: ref_triplet(e, groups, "cosine", 0.5, mining, soft=True), emb
    )


def test_triplet_all_ignores_zero_triplets_in_the_mean():
    # two tight, well separated clusters: most triplets satisfy the margin (loss 0);
    # only the violating ones enter the mean
    emb = torch.tensor(
        [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0], [0.3, 0.0]], dtype=torch.float64
    )
    groups = torch.tensor([0, 0, 0, 1, 1, 1])  # the last point sits in the wrong cluster
    ours = make("triplet", margin=0.5, distance_metric_name="euclidean", mining="all")
    ref = ref_triplet(emb, groups, "euclidean", 0.5, "all")
    torch.testing.assert_close(ours(emb, groups), ref, **TOL)
    # sanity of the reference itself: plain mean over all triplets is smaller
    D = torch.cdist(emb, emb)
    all_terms = [
        torch.relu(D[a, p] - D[a, q] + 0.5)
        for a in range(6) for p in range(6) for q in range(6)
        if p != a and groups[p] == groups[a] and groups[q] != groups[a]
    ]
    assert float(torch.stack(all_terms).mean()) < float(ref)


@pytest.mark.parametrize("mining", ["all", "hard", "semi_hard"])
def test_triplet_without_valid_triplets_is_zero_with_graph(mining):
    emb = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    loss = make("triplet", mining=mining)
    out = loss(emb, torch.tensor([0, 0, 0, 0]))  # no negatives anywhere
    assert float(out.detach()) == 0.0
    (grad,) = torch.autograd.grad(out, emb)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_triplet_rejects_unknown_mining():
    with pytest.raises(ValueError) as info:
        make("triplet", mining="bogus")
    msg = str(info.value)
    assert "bogus" in msg
    for choice in ("hard", "all", "semi_hard"):
        assert choice in msg


# --------------------------------------------------------------------------- MNRL refs
def ref_mnrl(emb, pairs, labels, subgroups, scale, symmetric):
    """Slow multiple-negatives-ranking loss per the docstring: cross entropy of each positive
    obj_a against every obj_b; with several subgroups in the batch, candidates of the
    anchor's own subgroup other than its partner are left out."""
    n = len(pairs)
    a_idx = pairs[:, 0].tolist()
    b_idx = pairs[:, 1].tolist()
    sub = subgroups.tolist()
    several = len(set(sub)) > 1

    def direction(src, dst):
        terms = []
        for i in range(n):
            if not float(labels[i]) > 0:
                continue
            logits = []
            for j in range(n):
                if several and j != i and sub[src[i]] == sub[dst[j]]:
                    continue
                logits.append((j, scale * ref_cos_sim(emb[src[i]], emb[dst[j]])))
            all_logits = torch.stack([v for _, v in logits])
            partner = [v for j, v in logits if j == i][0]
            terms.append(torch.logsumexp(all_logits, 0) - partner)
        return torch.stack(terms).mean()

    loss = direction(a_idx, b_idx)
    if symmetric:
        loss = 0.5 * (loss + direction(b_idx, a_idx))
    return loss


def mnrl_cases():
    # (scores, subgroups) for 6 pairs / 12 embeddings
    return {
        "plain": (None, None),
        "zero_score": ([1, 0, 1, 1, 0, 1], None),
        "subgroups": (None, [0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2]),
        "both": ([1, 1, 0, 1, 1, 0], [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]),
    }


@pytest.mark.parametrize("case", list(mnrl_cases()))
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_mnrl_matches_slow_reference(case, symmetric, seed):
    scores, sub = mnrl_cases()[case]
    emb, pairs, labels, subgroups = pair_batch(seed, scores=scores, subgroups=sub)
    loss = make("multiple_negatives_ranking", scale=7.0, symmetric=symmetric)
    value = assert_same_value_and_grad(
        lambda e: loss(e, pairs, labels, subgroups),
        lambda e: ref_mnrl(e, pairs, labels, subgroups, 7.0, symmetric),
        emb,
    )
    assert float(value) > 0


def test_mnrl_subgroup_masking_changes_the_loss():
    """The masked variant must differ from the unmasked one (masking is really applied)."""
    emb, pairs, labels, sub = pair_batch(5, subgroups=[0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2])
    loss = make("multiple_negatives_ranking", scale=10.0)
    masked = loss(emb, pairs, labels, sub)
    unmasked = loss(emb, pairs, labels, torch.zeros_like(sub))
    assert abs(float(masked) - float(unmasked)) > 1e-6
    # a constant non-zero subgroup id is "one subgroup": no masking
    torch.testing.assert_close(loss(emb, pairs, labels, torch.full_like(sub, 3)), unmasked)


def test_mnrl_zero_score_rows_are_not_anchors():
    """Changing the embedding of a zero-score pair's obj_a alone must not change the loss
    (it is not an anchor, and obj_a rows are no candidates in the forward direction)."""
    emb, pairs, labels, sub = pair_batch(6, scores=[1, 0, 1, 1, 1, 1])
    loss = make("multiple_negatives_ranking")
    before = loss(emb, pairs, labels, sub)
    moved = emb.clone()
    moved[pairs[1, 0]] = torch.randn(emb.shape[1], dtype=emb.dtype)
    torch.testing.assert_close(loss(moved, pairs, labels, sub), before)
    # ... but its obj_b is still a negative candidate for the other anchors
    moved_b = emb.clone()
    moved_b[pairs[1, 1]] = moved_b[pairs[0, 0]]  # make it identical to anchor 0
    assert float(loss(moved_b, pairs, labels, sub)) > float(before)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("symmetric", [False, True])
def test_mnrl_matches_pml_ntxent(seed, symmetric):
    """NTXent with obj_a as embeddings and obj_b as reference embeddings, labels = pair id,
    temperature = 1 / scale, is the same InfoNCE over in-batch obj_b candidates."""
    from pytorch_metric_learning import losses

    scale = 20.0
    emb, pairs, labels, sub = pair_batch(seed, n_pairs=8, scores=[1, 1, 0, 1, 1, 1, 0, 1])
    ntx = losses.NTXentLoss(temperature=1.0 / scale)
    ids = torch.arange(len(pairs))
    pos = labels > 0

    def pml(e):
        a, b = e[pairs[:, 0]], e[pairs[:, 1]]
        forward = ntx(a[pos], ids[pos], ref_emb=b, ref_labels=ids)
        if not symmetric:
            return forward
        return 0.5 * (forward + ntx(b[pos], ids[pos], ref_emb=a, ref_labels=ids))

    ours = make("multiple_negatives_ranking", scale=scale, symmetric=symmetric)
    assert_same_value_and_grad(lambda e: ours(e, pairs, labels, sub), pml, emb)


def test_mnrl_without_positive_pairs_raises_data_error():
    from simplug.errors import DataError

    emb, pairs, labels, sub = pair_batch(0, scores=[0, 0, 0, 0, 0, 0])
    with pytest.raises(DataError):
        make("multiple_negatives_ranking")(emb, pairs, labels, sub)


# --------------------------------------------------------------------------- contrastive
def ref_contrastive(emb, pairs, labels, subgroups, metric, margin):
    """0.5 * (s d^2 + (1 - s) relu(m - d)^2) per pair, plus 0.5 relu(m - d)^2 for every
    unordered couple of embeddings in different subgroups; mean over all terms."""
    terms = []
    for (i, j), s in zip(pairs.tolist(), labels.tolist()):
        s = min(max(s, 0.0), 1.0)
        d = ref_dist(metric, emb[i], emb[j])
        terms.append(0.5 * (s * d**2 + (1 - s) * torch.relu(margin - d) ** 2))
    sub = subgroups.tolist()
    for i in range(len(emb)):
        for j in range(i + 1, len(emb)):
            if sub[i] != sub[j]:
                d = ref_dist(metric, emb[i], emb[j])
                terms.append(0.5 * torch.relu(margin - d) ** 2)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("metric,margin", [("cosine", 1.0), ("euclidean", 3.0)])
@pytest.mark.parametrize(
    "scores,sub",
    [
        ([1, 0, 1, 0, 1, 0], None),
        ([1, 0.25, 0, 0.8, 1, 0], None),
        ([1, 0, 1, 0, 1, 1], [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1]),
        ([1, 0, 0.5, 1, 0, 1], [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]),
    ],
)
def test_contrastive_matches_slow_reference(seed, metric, margin, scores, sub):
    emb, pairs, labels, subgroups = pair_batch(seed, scores=scores, subgroups=sub)
    loss = make("contrastive", distance_metric_name=metric, margin=margin)
    value = assert_same_value_and_grad(
        lambda e: loss(e, pairs, labels, subgroups),
        lambda e: ref_contrastive(e, pairs, labels, subgroups, metric, margin),
        emb,
    )
    assert float(value) > 0


def test_contrastive_scores_are_clamped_to_unit_interval():
    emb, pairs, _, sub = pair_batch(3)
    loss = make("contrastive", margin=0.8)
    raw = torch.tensor([2.0, -1.0, 1.0, 0.0, 5.0, -3.0], dtype=torch.float64)
    clamped = raw.clamp(0, 1)
    torch.testing.assert_close(loss(emb, pairs, raw, sub), loss(emb, pairs, clamped, sub))
    torch.testing.assert_close(
        loss(emb, pairs, raw, sub), ref_contrastive(emb, pairs, raw, sub, "cosine", 0.8), **TOL
    )


def test_contrastive_rejects_non_positive_margin():
    with pytest.raises(ValueError):
        make("contrastive", margin=0.0)


# --------------------------------------------------------------------------- contract
@pytest.mark.parametrize(
    "name,kind", [("contrastive", "pairs"), ("multiple_negatives_ranking", "pairs"), ("triplet", "groups")]
)
def test_target_kind(name, kind):
    from simplug.components.loss import GroupLoss, PairwiseLoss

    cls = get_registry().resolve("losses", name)
    assert cls.target_kind == kind
    assert make(name).target_kind == kind
    assert issubclass(cls, PairwiseLoss if kind == "pairs" else GroupLoss)


@pytest.mark.parametrize("name", ["contrastive", "multiple_negatives_ranking", "triplet"])
def test_config_dict_round_trips(name):
    kwargs = {
        "contrastive": dict(margin=0.7, distance_metric_name="euclidean"),
        "multiple_negatives_ranking": dict(scale=5.0, symmetric=True),
        "triplet": dict(margin=0.2, mining="semi_hard", soft=True, distance_metric_name="euclidean"),
    }[name]
    loss = make(name, **kwargs)
    cfg = loss.get_config_dict()
    for key, value in kwargs.items():
        assert cfg[key] == value
    again = make(name, **cfg)
    assert again.get_config_dict() == cfg
