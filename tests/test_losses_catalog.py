"""The rest of the loss catalog (graded pair losses, group losses with and without learned
proxies, the pml wrapper) and cross-batch memory, by registered name.

Values and gradients (w.r.t. the embeddings, and the learned weights where a loss has them)
are compared with pytorch-metric-learning or sentence-transformers where they compute the
same quantity, otherwise with slow loops written from the definitions.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import run_cli
from data import group_points
from simplug.errors import ConfigError, DataError
from simplug.registry import get_registry
from test_losses import TOL, assert_same_value_and_grad, group_batch, make, pair_batch, ref_cos_sim, ref_dist

PAIR_LOSSES = ["contrastive", "multiple_negatives_ranking", "cosent", "cosine_similarity"]
GROUP_LOSSES = ["triplet", "online_contrastive", "arcface", "cosface", "softmax", "circle", "fast_ap", "center",
                "supervised_contrastive", "pml"]
D, G = 4, 3  # embedding size and number of groups of group_batch


def proxy_kwargs(name, **extra):
    needs = {"arcface", "cosface", "softmax", "center"}
    return {**({"embedding_size": D, "num_groups": G} if name in needs else {}), **extra}


def value_and_grads(fn, emb, params=()):
    e = emb.detach().clone().requires_grad_(True)
    value = fn(e)
    grads = torch.autograd.grad(value, [e, *params])
    return value.detach(), grads


def assert_same_with_params(ours, ours_params, theirs, their_params, emb, transpose=True):
    """Values, gradients w.r.t. embeddings and w.r.t. the weight matrices (PML stores W
    transposed: (embedding_size, num_groups))."""
    v1, (g1, w1) = value_and_grads(ours, emb, ours_params)
    v2, (g2, w2) = value_and_grads(theirs, emb, their_params)
    torch.testing.assert_close(v1, v2, **TOL)
    torch.testing.assert_close(g1, g2, **TOL)
    torch.testing.assert_close(w1, w2.T if transpose else w2, **TOL)
    assert float(v1) > 0 and float(w1.abs().sum()) > 0


def memory_batch(seed, m=15, d=D, n_groups=G):
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.randn(m, d, generator=g, dtype=torch.float64), torch.randint(0, n_groups, (m,), generator=g)


def assert_memory_form_matches_pml(ours, pml, emb, groups, seed, m=15):
    """``xbm_loss`` against remembered embeddings equals PML with them as ``ref_emb``."""
    mem, mem_groups = memory_batch(seed, m=m)
    return assert_same_value_and_grad(
        lambda e: ours.xbm_loss(e, groups, mem, mem_groups),
        lambda e: pml(e, groups, ref_emb=mem, ref_labels=mem_groups),
        emb,
    )


# =========================================================================== graded pair losses
def scored_couples(pairs, labels, subgroups, negative_score=0.0):
    """The given pairs with their scores, then every unordered couple of embeddings from
    different subgroups with ``negative_score``."""
    out = [(i, j, float(s)) for (i, j), s in zip(pairs.tolist(), labels.tolist())]
    sub = subgroups.tolist()
    for i in range(len(sub)):
        for j in range(i + 1, len(sub)):
            if sub[i] != sub[j]:
                out.append((i, j, float(negative_score)))
    return out


def ref_cosent(emb, pairs, labels, subgroups, scale, negative_score=0.0):
    couples = scored_couples(pairs, labels, subgroups, negative_score)
    sims = [ref_cos_sim(emb[i], emb[j]) for i, j, _ in couples]
    terms = [
        torch.exp(scale * (sims[b] - sims[a]))
        for a in range(len(couples)) for b in range(len(couples))
        if couples[a][2] > couples[b][2]
    ]
    return torch.log(1 + torch.stack(terms).sum()) if terms else emb.sum() * 0


def ref_cosine_regression(emb, pairs, labels, subgroups, negative_score=0.0):
    couples = scored_couples(pairs, labels, subgroups, negative_score)
    return torch.stack([(ref_cos_sim(emb[i], emb[j]) - s) ** 2 for i, j, s in couples]).mean()


GRADED = [0.9, 0.1, 0.5, 0.5, 0.75, 0.0]
SUBGROUPS = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cosent_matches_sentence_transformers(seed):
    from sentence_transformers.sentence_transformer.losses.cosent import CoSENTLoss

    emb, pairs, labels, sub = pair_batch(seed, scores=GRADED)
    st = CoSENTLoss(None, scale=20.0)
    ours = make("cosent", scale=20.0)
    assert_same_value_and_grad(
        lambda e: ours(e, pairs, labels, sub),
        lambda e: st.compute_loss_from_embeddings([e[pairs[:, 0]], e[pairs[:, 1]]], labels),
        emb,
    )


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sub", [None, SUBGROUPS, [0] * 6 + [1] * 6])
@pytest.mark.parametrize("negative_score", [0.0, 0.3])
def test_cosent_matches_slow_reference(seed, sub, negative_score):
    emb, pairs, labels, subgroups = pair_batch(seed, scores=GRADED, subgroups=sub)
    ours = make("cosent", scale=7.0, negative_score=negative_score)
    value = assert_same_value_and_grad(
        lambda e: ours(e, pairs, labels, subgroups),
        lambda e: ref_cosent(e, pairs, labels, subgroups, 7.0, negative_score),
        emb,
    )
    assert float(value) > 0


def test_cosent_only_the_order_of_scores_matters():
    emb, pairs, labels, sub = pair_batch(4, scores=GRADED, subgroups=SUBGROUPS)
    loss = make("cosent")
    rescaled = labels * 5.0 + 3.0  # same order; negatives (score 0) stay below every pair
    torch.testing.assert_close(loss(emb, pairs, rescaled, sub), loss(emb, pairs, labels, sub))
    equal = torch.full_like(labels, 0.5)  # no pair ranks above another, one subgroup: no term
    assert float(loss(emb, pairs, equal, torch.zeros_like(sub))) == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_cosine_similarity_matches_sentence_transformers(seed):
    from sentence_transformers.sentence_transformer.losses.cosine_similarity import CosineSimilarityLoss

    emb, pairs, labels, sub = pair_batch(seed, scores=GRADED)
    emb, labels = emb.float(), labels.float()
    st = CosineSimilarityLoss(None)
    ours = make("cosine_similarity")
    v1, g1 = value_and_grads(lambda e: ours(e, pairs, labels, sub), emb)
    v2, g2 = value_and_grads(lambda e: st.compute_loss_from_embeddings([e[pairs[:, 0]], e[pairs[:, 1]]], labels), emb)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(g1[0], g2[0])


@pytest.mark.parametrize("sub", [None, SUBGROUPS])
def test_cosine_similarity_matches_slow_reference(sub):
    emb, pairs, labels, subgroups = pair_batch(3, scores=GRADED, subgroups=sub)
    ours = make("cosine_similarity", negative_score=-0.2)
    assert_same_value_and_grad(
        lambda e: ours(e, pairs, labels, subgroups),
        lambda e: ref_cosine_regression(e, pairs, labels, subgroups, -0.2),
        emb,
    )


def test_every_registered_loss_is_covered_here():
    registry = get_registry()
    kinds = {n: registry.resolve("losses", n).target_kind for n in registry.names("losses")}
    assert {n for n, k in kinds.items() if k == "pairs"} == set(PAIR_LOSSES)
    assert {n for n, k in kinds.items() if k == "groups"} == set(GROUP_LOSSES)


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_every_pair_loss_honours_subgroups(name):
    """Three perfect pairs (a == b) on orthogonal axes; pairs 0 and 1 in subgroup 0, pair 2 in
    subgroup 1. Collapsing pair 2 onto pair 0 (another subgroup: negatives) must cost more
    than collapsing pair 1 onto pair 0 (same subgroup: maybe related, not negatives)."""
    pairs = torch.tensor([[0, 3], [1, 4], [2, 5]])
    labels = torch.ones(3, dtype=torch.float64)
    sub = torch.tensor([0, 0, 1, 0, 0, 1])
    axes = torch.eye(5, dtype=torch.float64)

    def batch(collapsed):
        vectors = axes[:3].clone()
        vectors[collapsed] = axes[0]
        return torch.cat([vectors, vectors])

    loss = make(name)
    same_subgroup = loss(batch(1), pairs, labels, sub)
    other_subgroup = loss(batch(2), pairs, labels, sub)
    assert float(other_subgroup) > float(same_subgroup) + 1e-3
    # relabelling subgroups changes nothing: ids are only compared
    torch.testing.assert_close(loss(batch(2), pairs, labels, sub * 7 + 3), other_subgroup)


# =========================================================================== online contrastive
def ref_online_contrastive(emb, groups, refs, ref_groups, same_set, metric, margin, mining):
    n, m = len(emb), len(refs)
    g, rg = groups.tolist(), ref_groups.tolist()
    pos_terms, neg_terms = [], []
    for a in range(n):
        P = [j for j in range(m) if rg[j] == g[a] and not (same_set and j == a)]
        N = [j for j in range(m) if rg[j] != g[a]]
        d = {j: ref_dist(metric, emb[a], refs[j]) for j in P + N}
        if mining == "hard":
            P = [max(P, key=lambda j: d[j].item())] if P else []
            N = [min(N, key=lambda j: d[j].item())] if N else []
        pos_terms += [d[j] ** 2 for j in P]
        neg_terms += [torch.relu(margin - d[j]) ** 2 for j in N]
    return 0.5 * (torch.stack(pos_terms).mean() + torch.stack(neg_terms).mean())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("metric,margin", [("cosine", 1.0), ("euclidean", 2.5)])
@pytest.mark.parametrize("mining", ["all", "hard"])
def test_online_contrastive_matches_slow_reference(seed, metric, margin, mining):
    emb, groups = group_batch(seed)
    loss = make("online_contrastive", margin=margin, distance_metric_name=metric, mining=mining)
    value = assert_same_value_and_grad(
        lambda e: loss(e, groups),
        lambda e: ref_online_contrastive(e, groups, e, groups, True, metric, margin, mining),
        emb,
    )
    assert float(value) > 0
    mem, mem_groups = memory_batch(seed)
    assert_same_value_and_grad(
        lambda e: loss.xbm_loss(e, groups, mem, mem_groups),
        lambda e: ref_online_contrastive(e, groups, mem, mem_groups, False, metric, margin, mining),
        emb,
    )


# =========================================================================== circle, fast_ap
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin,scale", [(0.25, 256.0), (0.4, 80.0)])
def test_circle_matches_pml(seed, margin, scale):
    from pytorch_metric_learning import losses

    emb, groups = group_batch(seed, n=12)
    pml = losses.CircleLoss(m=margin, gamma=scale)
    ours = make("circle", margin=margin, scale_factor=scale)
    assert float(assert_same_value_and_grad(lambda e: ours(e, groups), lambda e: pml(e, groups), emb)) > 0
    assert_memory_form_matches_pml(ours, pml, emb, groups, seed)


def ref_fast_ap(emb, groups, refs, ref_groups, same_set, num_bins):
    """Per anchor: candidates' squared distances (normalised) spread linearly onto the two
    nearest bin centres; AP = sum_k h+_k * H+_k / H_k / N+; loss = mean(1 - AP)."""
    centres = [4.0 * k / num_bins for k in range(num_bins + 1)]
    width = 4.0 / num_bins
    losses = []
    for a in range(len(emb)):
        q = emb[a] / torch.sqrt((emb[a] ** 2).sum())
        hp = [0.0 * q.sum()] * len(centres)
        hn = [0.0 * q.sum()] * len(centres)
        n_pos = 0
        for j in range(len(refs)):
            if same_set and j == a:
                continue
            r = refs[j] / torch.sqrt((refs[j] ** 2).sum())
            d2 = ((q - r) ** 2).sum()
            is_pos = int(ref_groups[j]) == int(groups[a])
            n_pos += is_pos
            for k, c in enumerate(centres):
                w = torch.relu(1 - torch.abs(d2 - c) / width)
                if is_pos:
                    hp[k] = hp[k] + w
                else:
                    hn[k] = hn[k] + w
        if not n_pos:
            continue
        ap, cum_p, cum_all = 0.0, 0.0, 0.0
        for k in range(len(centres)):
            cum_p = cum_p + hp[k]
            cum_all = cum_all + hp[k] + hn[k]
            if float(hp[k].detach()) > 0:
                ap = ap + hp[k] * cum_p / cum_all
        losses.append(1 - ap / n_pos)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("num_bins", [10, 4])
def test_fast_ap_matches_pml_and_slow_reference(seed, num_bins):
    from pytorch_metric_learning import losses

    emb, groups = group_batch(seed, n=12)
    ours = make("fast_ap", num_bins=num_bins)
    pml = losses.FastAPLoss(num_bins=num_bins)
    assert float(assert_same_value_and_grad(lambda e: ours(e, groups), lambda e: pml(e, groups), emb)) > 0
    assert_same_value_and_grad(
        lambda e: ours(e, groups), lambda e: ref_fast_ap(e, groups, e, groups, True, num_bins), emb
    )
    mem, mem_groups = memory_batch(seed)
    assert_same_value_and_grad(
        lambda e: ours.xbm_loss(e, groups, mem, mem_groups),
        lambda e: ref_fast_ap(e, groups, mem, mem_groups, False, num_bins),
        emb,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_supervised_contrastive_matches_pml(seed, temperature):
    from pytorch_metric_learning import losses

    emb, groups = group_batch(seed, n=12)
    pml = losses.SupConLoss(temperature=temperature)
    ours = make("supervised_contrastive", temperature=temperature)
    assert float(assert_same_value_and_grad(lambda e: ours(e, groups), lambda e: pml(e, groups), emb)) > 0
    assert_memory_form_matches_pml(ours, pml, emb, groups, seed)


# =========================================================================== triplet vs memory
@pytest.mark.parametrize("seed", [0, 1])
def test_triplet_against_memory_matches_pml_reference_embeddings(seed):
    from pytorch_metric_learning import distances, losses

    emb, groups = group_batch(seed)
    pml = losses.TripletMarginLoss(margin=1.0, distance=distances.LpDistance(normalize_embeddings=False))
    ours = make("triplet", margin=1.0, distance_metric_name="euclidean", mining="all")
    value = assert_memory_form_matches_pml(ours, pml, emb, groups, seed, m=20)
    assert float(value) > 0


# =========================================================================== proxy losses
def copy_weight_into_pml(ours, pml):
    with torch.no_grad():
        pml.W.copy_(ours.weight.detach().T)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin,scale", [(0.5, 64.0), (0.2, 10.0), (2.9, 16.0)])
def test_arcface_matches_pml(seed, margin, scale):
    from pytorch_metric_learning import losses

    torch.manual_seed(seed)
    emb, groups = group_batch(seed, n=12)
    ours = make("arcface", embedding_size=D, num_groups=G, margin=margin, scale=scale).double()
    pml = losses.ArcFaceLoss(num_classes=G, embedding_size=D, margin=math.degrees(margin), scale=scale).double()
    copy_weight_into_pml(ours, pml)
    assert_same_with_params(lambda e: ours(e, groups), [ours.weight], lambda e: pml(e, groups), [pml.W], emb)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin,scale", [(0.35, 64.0), (0.1, 8.0)])
def test_cosface_matches_pml(seed, margin, scale):
    from pytorch_metric_learning import losses

    torch.manual_seed(seed)
    emb, groups = group_batch(seed, n=12)
    ours = make("cosface", embedding_size=D, num_groups=G, margin=margin, scale=scale).double()
    pml = losses.CosFaceLoss(num_classes=G, embedding_size=D, margin=margin, scale=scale).double()
    copy_weight_into_pml(ours, pml)
    assert_same_with_params(lambda e: ours(e, groups), [ours.weight], lambda e: pml(e, groups), [pml.W], emb)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_normalized_softmax_matches_pml(seed, temperature):
    from pytorch_metric_learning import losses

    torch.manual_seed(seed)
    emb, groups = group_batch(seed, n=12)
    ours = make("softmax", embedding_size=D, num_groups=G, temperature=temperature, normalize=True).double()
    with torch.no_grad():
        ours.weight.normal_()
    pml = losses.NormalizedSoftmaxLoss(num_classes=G, embedding_size=D, temperature=temperature).double()
    copy_weight_into_pml(ours, pml)
    assert_same_with_params(lambda e: ours(e, groups), [ours.weight], lambda e: pml(e, groups), [pml.W], emb)


def ref_softmax(emb, groups, weight, temperature):
    terms = []
    for i in range(len(emb)):
        logits = [(emb[i] * weight[k]).sum() / temperature for k in range(len(weight))]
        terms.append(torch.logsumexp(torch.stack(logits), 0) - logits[int(groups[i])])
    return torch.stack(terms).mean()


def ref_center(emb, groups, centers, metric, lambda_c):
    return lambda_c * torch.stack([ref_dist(metric, emb[i], centers[int(groups[i])]) ** 2 for i in range(len(emb))]).mean()


@pytest.mark.parametrize("seed", [0, 1])
def test_softmax_matches_slow_reference(seed):
    torch.manual_seed(seed)
    emb, groups = group_batch(seed)
    ours = make("softmax", embedding_size=D, num_groups=G, temperature=0.5).double()
    with torch.no_grad():
        ours.weight.normal_()
    assert_same_with_params(
        lambda e: ours(e, groups), [ours.weight],
        lambda e: ref_softmax(e, groups, ours.weight, 0.5), [ours.weight], emb, transpose=False,
    )


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_center_matches_slow_reference(seed, metric):
    torch.manual_seed(seed)
    emb, groups = group_batch(seed)
    ours = make("center", embedding_size=D, num_groups=G, lambda_c=0.3, distance_metric_name=metric).double()
    v1, (g1, c1) = value_and_grads(lambda e: ours(e, groups), emb, [ours.centers])
    v2, (g2, c2) = value_and_grads(lambda e: ref_center(e, groups, ours.centers, metric, 0.3), emb, [ours.centers])
    torch.testing.assert_close(v1, v2, **TOL)
    torch.testing.assert_close(g1, g2, **TOL)
    torch.testing.assert_close(c1, c2, **TOL)
    assert float(v1) > 0


@pytest.mark.parametrize("name", ["arcface", "cosface", "softmax", "center"])
def test_proxy_losses_memory_term_trains_only_the_proxies(name):
    loss = make(name, **proxy_kwargs(name)).double()
    emb, groups = group_batch(0)
    mem, mem_groups = memory_batch(0)
    e = emb.clone().requires_grad_(True)
    term = loss.xbm_loss(e, groups, mem, mem_groups)
    torch.testing.assert_close(term, loss(mem, mem_groups))
    grad_e, grad_w = torch.autograd.grad(term, [e, next(loss.parameters())], allow_unused=True)
    assert grad_e is None or not grad_e.any()
    assert grad_w.abs().sum() > 0


# =========================================================================== bad input
@pytest.mark.parametrize("name", ["arcface", "cosface", "softmax", "center"])
def test_group_ids_out_of_range_are_a_data_error(name):
    loss = make(name, **proxy_kwargs(name))
    emb = torch.randn(4, D)
    for bad in ([0, 1, 3, 1], [0, -1, 1, 2]):
        with pytest.raises(DataError, match=rf"num_groups={G}.*{max(bad) if max(bad) >= G else min(bad)}"):
            loss(emb, torch.tensor(bad))
    with pytest.raises(DataError, match="embedding_size=4 but got embeddings of size 5"):
        loss(torch.randn(4, 5), torch.tensor([0, 1, 2, 0]))


@pytest.mark.parametrize("name", GROUP_LOSSES)
def test_pair_data_to_a_group_loss_is_a_clear_error(name):
    kwargs = proxy_kwargs(name, **({"loss": "TripletMarginLoss"} if name == "pml" else {}))
    loss = make(name, **kwargs)
    emb, pairs, labels, sub = pair_batch(0, d=D)
    with pytest.raises(DataError, match="group loss.*got pair targets.*use a pair loss"):
        loss(emb, pairs, labels, sub)
    with pytest.raises(DataError, match="group loss.*got pair targets"):
        loss(emb, pairs=pairs, labels=labels, subgroups=sub)
    with pytest.raises(DataError, match="integer group ids"):
        loss(emb, labels.repeat(2))
    with pytest.raises(DataError, match="one group id per embedding"):
        loss(emb, torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_group_data_to_a_pair_loss_is_a_clear_error(name):
    loss = make(name)
    emb, groups = group_batch(0)
    with pytest.raises(DataError, match="pair loss.*got group ids.*use a group loss"):
        loss(emb, groups=groups)
    with pytest.raises(DataError, match="pair loss.*got group ids"):
        loss(emb, groups)


@pytest.mark.parametrize("name,kwargs", [
    ("arcface", dict(embedding_size=0, num_groups=3)),
    ("softmax", dict(embedding_size=4, num_groups=2.5)),
    ("arcface", dict(embedding_size=4, num_groups=3, margin=4.0)),
    ("circle", dict(margin=0.25, scale_factor=256.0, distance_metric_name="euclidean")),
])
def test_bad_loss_arguments_are_config_errors(name, kwargs):
    from simplug.training.trainable import TrainableModel

    with pytest.raises(ConfigError):
        TrainableModel.from_config({"encoder": encoder(), "head": "skip_connection", "loss": {"name": name, **kwargs}})


# =========================================================================== pml wrapper
def test_pml_wrapper_equals_the_pml_loss_and_miner():
    from pytorch_metric_learning import losses, miners

    emb, groups = group_batch(2, n=16)
    ours = make("pml", loss="TripletMarginLoss", loss_args={"margin": 0.1}, miner="MultiSimilarityMiner",
                miner_args={"epsilon": 0.2})
    pml_loss, pml_miner = losses.TripletMarginLoss(margin=0.1), miners.MultiSimilarityMiner(epsilon=0.2)
    value = assert_same_value_and_grad(
        lambda e: ours(e, groups), lambda e: pml_loss(e, groups, pml_miner(e, groups)), emb
    )
    assert float(value) > 0
    mem, mem_groups = memory_batch(2)
    assert_same_value_and_grad(
        lambda e: ours.xbm_loss(e, groups, mem, mem_groups),
        lambda e: pml_loss(e, groups, pml_miner(e, groups, mem, mem_groups), mem, mem_groups),
        emb,
    )


def test_pml_wrapper_distance_by_name_and_config_round_trip():
    from pytorch_metric_learning import distances, losses

    spec = dict(loss="ContrastiveLoss", loss_args={"pos_margin": 0.1, "neg_margin": 2.0},
                distance="LpDistance", distance_args={"normalize_embeddings": False})
    ours = make("pml", **spec)
    cfg = ours.get_config_dict()
    assert cfg == {**spec, "miner": None, "miner_args": {}}
    json.dumps(cfg)
    again = make("pml", **cfg)
    assert again.get_config_dict() == cfg
    emb, groups = group_batch(1)
    pml = losses.ContrastiveLoss(pos_margin=0.1, neg_margin=2.0, distance=distances.LpDistance(normalize_embeddings=False))
    assert_same_value_and_grad(lambda e: again(e, groups), lambda e: pml(e, groups), emb)


def test_pml_wrapper_takes_pml_objects_as_in_quaterion():
    from pytorch_metric_learning import losses, miners

    from simplug.plugins.losses.pml import PytorchMetricLearningWrapper

    pml_loss, pml_miner = losses.TripletMarginLoss(margin=0.3), miners.BatchHardMiner()
    ours = PytorchMetricLearningWrapper(pml_loss, pml_miner)
    assert ours.get_config_dict()["loss"] == "TripletMarginLoss"
    assert ours.get_config_dict()["miner"] == "BatchHardMiner"
    emb, groups = group_batch(4)
    assert_same_value_and_grad(lambda e: ours(e, groups), lambda e: pml_loss(e, groups, pml_miner(e, groups)), emb)


def test_pml_wrapper_trains_the_pml_loss_parameters_and_checks_group_ids():
    loss = make("pml", loss="ArcFaceLoss", loss_args={"num_classes": G, "embedding_size": D})
    assert [tuple(p.shape) for p in loss.parameters()] == [(D, G)]
    with pytest.raises(DataError, match=f"num_groups={G}"):
        loss(torch.randn(4, D), torch.tensor([0, 1, 2, 5]))


@pytest.mark.parametrize("spec,match", [
    (dict(loss="TripletMarginLos"), r"no loss 'TripletMarginLos'\. Did you mean: TripletMarginLoss"),
    (dict(loss="CrossBatchMemory"), "no loss 'CrossBatchMemory'"),
    (dict(loss="TripletMarginLoss", miner="MultiSimilarityMinor"), "Did you mean: MultiSimilarityMiner"),
    (dict(loss="TripletMarginLoss", distance="Cosine"), "no distance 'Cosine'.*CosineSimilarity"),
    (dict(loss="TripletMarginLoss", loss_args={"margn": 0.1}), r"TripletMarginLoss\(margin=.*rejected.*margn"),
    (dict(loss="ArcFaceLoss"), "ArcFaceLoss.*rejected"),
])
def test_pml_wrapper_bad_names_and_arguments(spec, match):
    with pytest.raises(ConfigError, match=match):
        make("pml", **spec)


def test_pml_wrapper_without_the_library_says_how_to_install_it(monkeypatch):
    import sys

    for module in [m for m in sys.modules if m.startswith("pytorch_metric_learning")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "pytorch_metric_learning", None)  # import now fails
    with pytest.raises(ConfigError, match="needs pytorch-metric-learning.*pip install pytorch-metric-learning"):
        make("pml", loss="TripletMarginLoss")


def test_pml_wrapper_refuses_memory_for_losses_that_cannot_use_it():
    with pytest.raises(ConfigError, match="FastAPLoss neither compares with reference embeddings"):
        make("pml", loss="FastAPLoss").check_xbm_support()
    make("pml", loss="ArcFaceLoss", loss_args={"num_classes": 3, "embedding_size": 4}).check_xbm_support()
    make("pml", loss="SupConLoss").check_xbm_support()


def test_listing_and_resolving_losses_do_not_import_pml():
    result = run_cli("list", "--json", "--kind", "losses")
    assert result.returncode == 0, result.stderr
    names = {row["name"] for row in json.loads(result.stdout)}
    assert names >= set(PAIR_LOSSES + GROUP_LOSSES)
    from conftest import run_python

    code = (
        "import sys\nfrom simplug.registry import get_registry\n"
        "r = get_registry()\nfor n in " + repr(PAIR_LOSSES + GROUP_LOSSES) + ": r.resolve('losses', n)\n"
        "assert 'pytorch_metric_learning' not in sys.modules, 'imported'\nprint('OK')"
    )
    out = run_python(code)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr


# =========================================================================== cross-batch memory
def xbm_loss_for(name):
    kwargs = {"pml": {"loss": "MultiSimilarityLoss"}, "triplet": {"mining": "semi_hard"}}.get(name, {})
    return make(name, **proxy_kwargs(name, **kwargs))


def test_memory_ring_buffer_keeps_the_last_rows():
    from simplug.training.xbm import CrossBatchMemory, XbmConfig

    memory = CrossBatchMemory(XbmConfig(buffer_size=7, start_iteration=0))
    seen_e, seen_g = [], []
    for step in range(5):
        e, g = torch.randn(3, 2), torch.randint(0, 4, (3,))
        memory.enqueue(e, g)
        seen_e.append(e)
        seen_g.append(g)
        assert len(memory) == min(7, 3 * (step + 1))
        all_e, all_g = torch.cat(seen_e)[-7:], torch.cat(seen_g)[-7:]
        mem_e, mem_g = memory.contents()
        # the same rows, in storage order: compare as sorted sets of (group, embedding)
        key = lambda E, Gr: sorted(zip(Gr.tolist(), E.tolist()))  # noqa: E731
        assert key(mem_e, mem_g) == key(all_e, all_g)
    memory.enqueue(torch.randn(10, 2), torch.zeros(10, dtype=torch.long))  # more than fits
    assert len(memory) == 7


@pytest.mark.parametrize("bad", [dict(weight=-1.0), dict(buffer_size=0), dict(start_iteration=-2), dict(buffer_size=2.5)])
def test_xbm_config_validation(bad):
    from simplug import XbmConfig

    with pytest.raises(ConfigError):
        XbmConfig(**bad)


def encoder(dim=12, out=D, trainable=True):
    from simplug.plugins.encoders.torch_module import TorchModuleEncoder

    torch.manual_seed(0)
    return TorchModuleEncoder(nn.Sequential(nn.Linear(dim, out), nn.Tanh()), input_size=dim, trainable=trainable)


def xbm_model(loss, config):
    from simplug import TrainableModel

    class Model(TrainableModel):
        step = 0

        @property
        def global_step(self):  # stands in for the trainer's counter
            return self.step

        def configure_encoders(self):
            return encoder()

        def configure_loss(self):
            return loss

        def configure_xbm(self):
            return config

    return Model()


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("name", GROUP_LOSSES)
def test_xbm_adds_weight_times_memory_term_for_every_group_loss(name):
    from simplug import XbmConfig

    weight, size, start, batch = 0.7, 20, 2, 8
    loss = xbm_loss_for(name)
    model = xbm_model(loss, XbmConfig(weight=weight, buffer_size=size, start_iteration=start))
    data = group_points(n_groups=G, per_group=16, dim=12)
    gen = torch.Generator().manual_seed(0)
    collate = model.model.get_collate_fn()
    seen_embeddings, seen_groups = [], []
    for step in range(5):
        idx = torch.randperm(len(data), generator=gen)[:batch]
        features = collate([data[i].obj for i in idx])
        groups = torch.tensor([data[i].group for i in idx])
        model.step = step
        total = model.training_step((features, {"groups": groups}), step)
        # earlier batches are in the memory; this one is written at the next step
        assert len(model.xbm) == min(size, step * batch)
        embeddings = model(features)  # no optimizer step in between: the same embeddings
        plain = loss(embeddings, groups)
        if step < start:
            torch.testing.assert_close(total, plain)
        else:
            memory = torch.cat(seen_embeddings)[-size:], torch.cat(seen_groups)[-size:]
            term = loss.xbm_loss(embeddings, groups, *memory)
            torch.testing.assert_close(total, plain + weight * term)
            assert abs(float(term.detach())) > 1e-6, "the memory term is not vacuous"
        total.backward()  # the combined loss trains; the memory is not written under its graph
        seen_embeddings.append(embeddings.detach())
        seen_groups.append(groups)


def test_xbm_misconfiguration_is_a_config_error():
    from simplug import XbmConfig

    with pytest.raises(ConfigError, match="works with group losses.*pair loss"):
        xbm_model(make("contrastive"), XbmConfig())
    with pytest.raises(ConfigError, match="must return an XbmConfig"):
        xbm_model(make("triplet"), {"weight": 1.0})
    with pytest.raises(ConfigError, match="cannot use cross-batch memory"):
        xbm_model(make("pml", loss="FastAPLoss"), XbmConfig())

    from simplug.components.loss import GroupLoss

    class OwnLoss(GroupLoss):  # a third-party loss without xbm_loss
        def compute(self, embeddings, groups):
            return embeddings.sum()

    with pytest.raises(ConfigError, match="does not implement xbm_loss"):
        xbm_model(OwnLoss(), XbmConfig())


# =========================================================================== training from a config
FIT = dict(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


def graded_pairs(n=48, dim=12, seed=0):
    from simplug import SimilarityPairSample

    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, dim, generator=gen)
    noise = torch.rand(n, generator=gen)
    other = base * (1 - noise[:, None]) + noise[:, None] * torch.randn(n, dim, generator=gen)
    return [SimilarityPairSample(a, b, score=float(1 - s), subgroup=i % 3) for i, (a, b, s) in enumerate(zip(base, other, noise))]


@pytest.mark.parametrize("loss", [
    "cosent", "cosine_similarity",
    {"name": "online_contrastive", "mining": "all"},
    {"name": "arcface", "num_groups": 6}, {"name": "cosface", "num_groups": 6},
    {"name": "softmax", "num_groups": 6, "normalize": True}, "circle", "fast_ap",
    {"name": "center", "num_groups": 6}, "supervised_contrastive",
    {"name": "pml", "loss": "TripletMarginLoss", "miner": "MultiSimilarityMiner"},
])
def test_each_loss_trains_from_a_config(loss):
    from simplug import GroupSimilarityDataLoader, PairsSimilarityDataLoader, Quaterion, TrainableModel

    model = TrainableModel.from_config({"encoder": encoder(trainable=False), "head": "skip_connection", "loss": loss,
                                        "optimizer": {"name": "adam", "lr": 1e-2}})
    if model.loss.target_kind == "pairs":
        loader = PairsSimilarityDataLoader(graded_pairs(), batch_size=16, shuffle=True)
    else:
        loader = GroupSimilarityDataLoader(group_points(per_group=8), batch_size=24, shuffle=True)
    head_before = [p.detach().clone() for p in model.model.head.parameters()]
    loss_before = [p.detach().clone() for p in model.loss.parameters()]
    trainer = Quaterion.fit(model, train_dataloader=loader, **FIT)
    assert trainer.current_epoch == 2 and torch.isfinite(trainer.callback_metrics["loss_train_epoch"])
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.model.head.parameters()))
    # learned proxies are in the optimizer and move too
    assert all(not torch.equal(a, b) for a, b in zip(loss_before, model.loss.parameters()))


def test_xbm_from_a_config_fills_the_memory_and_logs_its_term():
    from simplug import GroupSimilarityDataLoader, Quaterion, TrainableModel

    model = TrainableModel.from_config({
        "encoder": encoder(trainable=False), "head": "skip_connection",
        "loss": {"name": "arcface", "num_groups": 6},
        "xbm": {"weight": 0.5, "buffer_size": 40, "start_iteration": 2},
    })
    assert model.loss.embedding_size == model.model.head.output_size  # filled in from the head
    loader = GroupSimilarityDataLoader(group_points(per_group=8), batch_size=16, shuffle=True)
    trainer = Quaterion.fit(model, train_dataloader=loader, **FIT)
    assert len(model.xbm) == 40
    assert "loss_xbm_train_epoch" in trainer.callback_metrics
    with pytest.raises(ConfigError, match="unknown argument 'size'"):
        TrainableModel.from_config({"encoder": encoder(), "loss": "triplet", "xbm": {"size": 3}})


def test_group_ids_out_of_range_and_nan_embeddings_stop_training():
    from simplug import GroupSimilarityDataLoader, Quaterion, SimilarityGroupSample, TrainableModel

    config = {"encoder": encoder(), "head": "skip_connection", "loss": {"name": "arcface", "num_groups": 3}}
    data = group_points(n_groups=4, per_group=4)
    with pytest.raises(DataError, match=r"num_groups=3.*\[3\]"):
        Quaterion.fit(TrainableModel.from_config(config), train_dataloader=GroupSimilarityDataLoader(data, batch_size=16), **FIT)
    bad = [SimilarityGroupSample(obj=torch.full((12,), float("nan")), group=i % 3) for i in range(6)]
    with pytest.raises(DataError, match="NaN or inf embeddings at train step 0"):
        Quaterion.fit(TrainableModel.from_config(config), train_dataloader=GroupSimilarityDataLoader(bad, batch_size=6), **FIT)


def test_optimizer_includes_the_loss_parameters():
    from simplug import TrainableModel

    model = TrainableModel.from_config({"encoder": encoder(trainable=False), "head": "skip_connection",
                                        "loss": {"name": "cosface", "num_groups": 5}})
    optimizer = model.configure_optimizers()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model.loss.weight) in in_optimizer
    assert all(id(p) in in_optimizer for p in model.model.head.parameters())


# =========================================================================== config round trip
ROUND_TRIP = {
    "cosent": dict(scale=12.0, negative_score=-1.0, distance_metric_name="dot_product"),
    "cosine_similarity": dict(negative_score=-0.5),
    "online_contrastive": dict(margin=0.7, mining="all", distance_metric_name="euclidean"),
    "arcface": dict(embedding_size=8, num_groups=4, scale=30.0, margin=0.3),
    "cosface": dict(embedding_size=8, num_groups=4, scale=30.0, margin=0.2),
    "softmax": dict(embedding_size=8, num_groups=4, temperature=0.1, normalize=True),
    "circle": dict(margin=0.4, scale_factor=80.0),
    "fast_ap": dict(num_bins=20),
    "supervised_contrastive": dict(temperature=0.3),
    "center": dict(embedding_size=8, num_groups=4, lambda_c=0.1, distance_metric_name="cosine"),
    "pml": dict(loss="TripletMarginLoss", loss_args={"margin": 0.3}, miner="BatchHardMiner", miner_args={},
                distance=None, distance_args={}),
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_config_dict_round_trips(name):
    loss = make(name, **ROUND_TRIP[name])
    cfg = loss.get_config_dict()
    assert cfg == ROUND_TRIP[name] if name != "cosent" else {k: cfg[k] for k in ROUND_TRIP[name]} == ROUND_TRIP[name]
    json.dumps(cfg)
    assert make(name, **cfg).get_config_dict() == cfg
