import math
from importlib.metadata import entry_points

import torch

from simplug.testing import check_loss, registered_plugin

from simplug_sigmoid_loss import hooks
from simplug_sigmoid_loss.loss import SigmoidPairLoss


def slow_sigmoid_loss(embeddings, pairs, labels, subgroups, scale, bias):
    """The formula written out, one candidate at a time."""
    n = len(pairs)
    several_subgroups = len(set(subgroups.tolist())) > 1
    total = 0.0
    for i in range(n):
        a = embeddings[pairs[i][0]]
        for j in range(n):
            b = embeddings[pairs[j][1]]
            if i != j and several_subgroups and subgroups[pairs[i][0]] == subgroups[pairs[j][1]]:
                continue
            cos = float(a @ b / (a.norm() * b.norm()))
            z = scale * cos + bias
            target = float(labels[i]) if i == j else 0.0
            p = 1 / (1 + math.exp(-z))
            total -= target * math.log(p) + (1 - target) * math.log(1 - p)
    return total / n


def test_keeps_the_loss_contract():
    check_loss(SigmoidPairLoss(), name="sigmoid_pairs")
    check_loss(SigmoidPairLoss(scale=5.0, bias=-2.0, distance_metric_name="dot_product"), name="sigmoid_pairs")


def test_matches_the_formula_with_graded_scores_and_subgroups():
    torch.manual_seed(0)
    embeddings = torch.randn(10, 4, dtype=torch.float64)
    pairs = torch.stack([torch.arange(5), torch.arange(5, 10)], dim=1)
    labels = torch.tensor([1.0, 0.7, 0.0, 1.0, 0.3])
    for subgroups in (torch.zeros(10, dtype=torch.long), torch.tensor([0, 1, 1, 2, 0] * 2)):
        got = SigmoidPairLoss(scale=4.0, bias=-1.5)(embeddings, pairs, labels, subgroups)
        want = slow_sigmoid_loss(embeddings, pairs, labels, subgroups, 4.0, -1.5)
        assert math.isclose(got.item(), want, rel_tol=1e-9)


def test_matching_pairs_lower_the_loss():
    torch.manual_seed(1)
    a = torch.randn(6, 8)
    pairs = torch.stack([torch.arange(6), torch.arange(6, 12)], dim=1)
    labels, subgroups = torch.ones(6), torch.zeros(12, dtype=torch.long)
    loss = SigmoidPairLoss()
    aligned = loss(torch.cat([a, a + 0.01 * torch.randn(6, 8)]), pairs, labels, subgroups)
    shuffled = loss(torch.cat([a, a[torch.tensor([1, 2, 3, 4, 5, 0])]]), pairs, labels, subgroups)
    assert aligned < shuffled


def test_the_installed_entry_point_names_the_hooks_module():
    found = [ep for ep in entry_points(group="simplug") if ep.value == "simplug_sigmoid_loss.hooks"]
    assert found, "the plugin is not installed: run `pip install -e .` in the package directory"


def test_registered_under_its_name(isolated_registry):
    with registered_plugin(hooks, registry=isolated_registry):
        assert isolated_registry.resolve("losses", "sigmoid_pairs") is SigmoidPairLoss
