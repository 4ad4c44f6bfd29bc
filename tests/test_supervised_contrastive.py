"""supervised_contrastive against pytorch-metric-learning's SupConLoss and a slow loop."""
from __future__ import annotations

import math

import pytest
import torch

from simplug.plugins.losses.supervised_contrastive import SupervisedContrastiveLoss


def batch(seed: int, n: int = 24, dim: int = 8, n_groups: int = 5):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    groups = torch.randint(0, n_groups, (n,), generator=generator)
    groups[-1] = 99  # one anchor without positives: left out of the mean by both
    return embeddings, groups


def slow_supcon(embeddings: torch.Tensor, groups: torch.Tensor, temperature: float) -> float:
    e = [row / row.norm() for row in embeddings]
    n = len(e)
    sims = [[float(e[i] @ e[j]) / temperature for j in range(n)] for i in range(n)]
    losses = []
    for i in range(n):
        positives = [p for p in range(n) if p != i and groups[p] == groups[i]]
        if not positives:
            continue
        denominator = math.log(sum(math.exp(sims[i][a]) for a in range(n) if a != i))
        losses.append(-sum(sims[i][p] - denominator for p in positives) / len(positives))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_values_and_gradients_match_pml(seed, temperature):
    from pytorch_metric_learning import losses

    embeddings, groups = batch(seed)
    ours_in = embeddings.clone().requires_grad_(True)
    pml_in = embeddings.clone().requires_grad_(True)
    ours = SupervisedContrastiveLoss(temperature=temperature)(ours_in, groups)
    reference = losses.SupConLoss(temperature=temperature)(pml_in, groups)
    ours.backward()
    reference.backward()
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(ours_in.grad, pml_in.grad, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("seed", [3, 4])
def test_matches_slow_reference(seed):
    embeddings, groups = batch(seed, n=10)
    loss = SupervisedContrastiveLoss(temperature=0.2)(embeddings, groups)
    assert float(loss) == pytest.approx(slow_supcon(embeddings, groups, 0.2), rel=1e-9)


def test_lower_when_groups_are_separated():
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    centres = torch.eye(3, 4)[groups]
    separated = SupervisedContrastiveLoss()(centres + 0.01 * torch.randn(6, 4), groups)
    mixed = SupervisedContrastiveLoss()(torch.randn(6, 4), groups)
    assert separated < mixed


def test_batch_without_positives_is_zero_with_graph():
    embeddings = torch.randn(4, 3, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="no two items of the same group"):
        loss = SupervisedContrastiveLoss()(embeddings, torch.arange(4))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert embeddings.grad is not None


def test_registered_by_name_and_rejects_bad_temperature():
    from simplug.config import build_component
    from simplug.loss import SimilarityLoss

    loss = build_component("losses", {"name": "supervised_contrastive", "temperature": 0.05}, SimilarityLoss)
    assert isinstance(loss, SupervisedContrastiveLoss) and loss.target_kind == "groups"
    assert loss.get_config_dict()["temperature"] == 0.05
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SupervisedContrastiveLoss(temperature=0)
