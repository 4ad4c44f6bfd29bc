"""Evaluator with PairSampler / GroupSampler: block-by-block metrics equal the full-matrix
ones exactly, no distance block exceeds block_size rows, sampling options, every kind of
model (path, SimilarityModel, TrainableModel), and bad input."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from data import group_points, pair_points
from simplug import AttachedMetric, Evaluator, GroupSampler, PairSampler, SimilarityPairSample, TrainableModel
from simplug.errors import ConfigError, DataError
from simplug.plugins.encoders.torch_module import TorchModuleEncoder

RETRIEVAL = [
    {"name": "retrieval_precision", "k": 3},
    {"name": "recall", "k": 1},
    {"name": "recall", "k": 5},
    "retrieval_reciprocal_rank",
    "retrieval_r_precision",
    "map_at_r",
    {"name": "map_at_r", "distance_metric_name": "euclidean"},
]


def model():
    torch.manual_seed(0)
    encoder = TorchModuleEncoder(nn.Sequential(nn.Linear(12, 8), nn.Tanh()), input_size=12)
    return TrainableModel.from_config({"encoder": encoder, "head": "gated", "loss": "triplet"})


def named(metrics):
    return {f"m{i}": spec for i, spec in enumerate(metrics)}


@pytest.mark.parametrize("data", ["groups", "pairs"])
def test_blocks_give_exactly_the_full_matrix_result(data):
    dataset = group_points(n_groups=7, per_group=15) if data == "groups" else pair_points(n_pairs=60)
    m = model()
    full = Evaluator(named(RETRIEVAL), block_size=100_000).evaluate(dataset, m)
    for block_size in (1, 7, 32):
        assert Evaluator(named(RETRIEVAL), block_size=block_size).evaluate(dataset, m) == full
    # and the same as one Metric.compute over all the embeddings
    evaluator = Evaluator(named(RETRIEVAL))
    embeddings, targets = evaluator.encode(dataset, m)
    for key, metric in evaluator.metrics.items():
        assert full[key] == pytest.approx(float(metric.compute(embeddings, targets)), abs=1e-6), key
    assert all(0.0 < v <= 1.0 for v in full.values())


def test_no_distance_block_has_more_rows_than_block_size():
    evaluator = Evaluator(named(RETRIEVAL), block_size=16)
    shapes = []
    for metric in evaluator.metrics.values():
        original = metric.distance.distance_matrix

        def spy(x, y=None, _original=original):
            out = _original(x, y)
            shapes.append(tuple(out.shape))
            return out

        metric.distance.distance_matrix = spy
    dataset = group_points(n_groups=5, per_group=20)
    evaluator.evaluate(dataset, model())
    assert shapes and max(rows for rows, _ in shapes) <= 16
    assert all(cols == 100 for _, cols in shapes)
    assert sum(rows for rows, _ in shapes) == 100 * 2  # every query once per distance


def test_saved_in_memory_and_trainable_models_agree(tmp_path):
    m = model()
    path = str(tmp_path / "model")
    m.save_servable(path)
    dataset = group_points(n_groups=4, per_group=10)
    evaluator = Evaluator(["retrieval_r_precision", {"name": "recall", "k": 2}])
    by_trainable = evaluator.evaluate(dataset, m)
    assert evaluator.evaluate(dataset, m.model) == by_trainable
    assert evaluator.evaluate(dataset, path) == by_trainable
    assert set(by_trainable) == {"retrieval_r_precision", "recall@2"}


def test_group_sampler_sample_size_and_seed():
    dataset = group_points(n_groups=5, per_group=20)
    a = GroupSampler(sample_size=30, seed=1).sample(dataset)
    b = GroupSampler(sample_size=30, seed=1).sample(dataset)
    c = GroupSampler(sample_size=30, seed=2).sample(dataset)
    assert len(a[0]) == 30 and torch.equal(a[1]["groups"], b[1]["groups"])
    assert all(torch.equal(x, y) for x, y in zip(a[0], b[0]))
    assert not all(torch.equal(x, y) for x, y in zip(a[0], c[0]))
    assert len(GroupSampler(sample_size=-1).sample(dataset)[0]) == 100
    assert len(GroupSampler(sample_size=1000).sample(dataset)[0]) == 100
    ev = Evaluator("map_at_r", sampler=GroupSampler(sample_size=40, seed=3, encode_batch_size=7))
    assert ev.evaluate(dataset, model()) == ev.evaluate(dataset, model())


def test_pair_sampler_merges_equal_objects():
    data = [
        SimilarityPairSample("cheesecake", "muffins", 1.0),
        SimilarityPairSample("cheesecake", "macaroons", 1.0),
        SimilarityPairSample("lemon", "lime", 1.0),
        SimilarityPairSample("lemon", "muffins", 0.0),
    ]
    objects, targets = PairSampler().sample(data)
    assert objects == ["cheesecake", "muffins", "macaroons", "lemon", "lime"]
    assert targets["pairs"].tolist() == [[0, 1], [0, 2], [3, 4], [3, 1]]
    assert targets["labels"].tolist() == [1.0, 1.0, 1.0, 0.0]
    objects, _ = PairSampler(deduplicate=False).sample(data)
    assert len(objects) == 8
    assert len(PairSampler(sample_size=2, seed=0).sample(data)[1]["pairs"]) == 2


def test_pair_metrics_in_the_evaluator():
    from sklearn.metrics import roc_auc_score

    data = pair_points(n_pairs=30)
    # negatives: each a with the b of the next pair
    data += [SimilarityPairSample(data[i].obj_a, data[(i + 1) % 30].obj_b, 0.0) for i in range(30)]
    m = model()
    result = Evaluator(["pair_auc", "pair_accuracy", "recall"], block_size=8).evaluate(data, m)
    emb = m.model.encode([s.obj_a for s in data] + [s.obj_b for s in data], to_numpy=False).double()
    a, b = emb[: len(data)], emb[len(data) :]
    sims = (nn.functional.normalize(a, dim=1) * nn.functional.normalize(b, dim=1)).sum(dim=1)
    assert result["pair_auc"] == pytest.approx(roc_auc_score([s.score for s in data], sims.numpy()), abs=1e-6)
    assert 0.5 <= result["pair_accuracy"] <= 1.0


def test_attached_metrics_and_dicts_name_the_results():
    ev = Evaluator({"r1": {"name": "recall", "k": 1}, "rp": "retrieval_r_precision"})
    assert list(ev.metrics) == ["r1", "rp"]
    ev2 = Evaluator([AttachedMetric("hits", {"name": "recall", "k": 1})])
    dataset = group_points(n_groups=3, per_group=5)
    m = model()
    assert ev2.evaluate(dataset, m)["hits"] == ev.evaluate(dataset, m)["r1"]


def test_bad_input_is_explained():
    m = model()
    groups = group_points(n_groups=3, per_group=4)  # 12 objects, 11 candidates
    with pytest.raises(DataError, match=r"k=20 .*only 11"):
        Evaluator({"name": "recall", "k": 20}).evaluate(groups, m)
    with pytest.raises(DataError, match="pair_auc scores labelled pairs.*PairSampler"):
        Evaluator("pair_auc").evaluate(groups, m)
    with pytest.raises(DataError, match="needs both positive and negative pairs"):
        Evaluator("pair_auc").evaluate(pair_points(n_pairs=5), m)
    with pytest.raises(DataError, match="PairSampler evaluates SimilarityPairSample.*use GroupSampler"):
        Evaluator("recall", sampler=PairSampler()).evaluate(groups, m)
    with pytest.raises(DataError, match="no object of the evaluation data has a relevant"):
        Evaluator("recall").evaluate(group_points(n_groups=3, per_group=1), m)
    with pytest.raises(DataError, match="empty"):
        Evaluator("recall").evaluate([], m)
    with pytest.raises(ConfigError, match="sample_size"):
        GroupSampler(sample_size=0)
    with pytest.raises(ConfigError, match="block_size"):
        Evaluator("recall", block_size=0)
    with pytest.raises(ConfigError, match="evaluate takes a saved model path"):
        Evaluator("recall").evaluate(groups, object())
