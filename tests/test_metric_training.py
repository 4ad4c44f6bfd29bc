"""Metrics by name in short training runs from a config, AttachedMetric's logging options,
and the process_results hook."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from data import group_points, pair_points
from simplug import (
    AttachedMetric,
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
    Quaterion,
    SimilarityPairSample,
    TrainableModel,
)
from simplug.errors import ConfigError
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.training.trainable import ConfigTrainableModel

FIT = dict(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


def encoder():
    torch.manual_seed(0)
    return TorchModuleEncoder(nn.Sequential(nn.Linear(12, 8), nn.Tanh()), input_size=12)


def test_every_retrieval_metric_by_name_in_group_training():
    config = {
        "encoder": encoder(),
        "head": "skip_connection",
        "loss": "triplet",
        "metrics": [
            {"name": "retrieval_precision", "k": 2},
            "retrieval_reciprocal_rank",
            "retrieval_r_precision",
            {"name": "recall", "k": 3},
            "map_at_r",
            {"name": "recall", "k": 1, "log": {"name": "hit1", "stages": ["train", "validation"], "prog_bar": False}},
            "pair_auc",  # on group batches: every two objects form a pair
        ],
    }
    model = TrainableModel.from_config(config)
    data = group_points(n_groups=4, per_group=8)
    trainer = Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(data, batch_size=16, shuffle=True),
                            val_dataloader=GroupSimilarityDataLoader(data, batch_size=32), **FIT)
    logged = trainer.callback_metrics
    for name in ("retrieval_precision@2", "retrieval_reciprocal_rank", "retrieval_r_precision", "recall@3", "map@r",
                 "hit1", "pair_auc"):
        assert f"{name}_validation" in logged, name
        assert 0.0 <= float(logged[f"{name}_validation"]) <= 1.0
    # only the metric attached to the train stage is logged there
    assert "hit1_train_epoch" in logged or "hit1_train" in logged
    assert not any(k.startswith("map@r_train") for k in logged)
    assert model.training_info()["metrics"] == ["retrieval_precision@2", "retrieval_reciprocal_rank",
                                                "retrieval_r_precision", "recall@3", "map@r", "hit1", "pair_auc"]


def test_pair_metrics_by_name_in_pair_training():
    train = pair_points(n_pairs=32)
    val = pair_points(n_pairs=16, seed=5)
    val += [SimilarityPairSample(val[i].obj_a, val[(i + 3) % 16].obj_b, 0.0) for i in range(16)]
    model = TrainableModel.from_config({
        "encoder": encoder(), "head": "gated", "loss": "contrastive",
        "metrics": ["pair_accuracy", {"name": "pair_accuracy", "threshold": 0.5, "log": {"name": "acc05"}}, "pair_auc"],
    })
    trainer = Quaterion.fit(model, train_dataloader=PairsSimilarityDataLoader(train, batch_size=16),
                            val_dataloader=PairsSimilarityDataLoader(val, batch_size=32), **FIT)
    for name in ("pair_accuracy", "acc05", "pair_auc"):
        assert 0.0 <= float(trainer.callback_metrics[f"{name}_validation"]) <= 1.0


def test_attached_metric_options():
    attached = AttachedMetric("rr", "retrieval_reciprocal_rank", stages="train", prog_bar=True)
    assert attached.stages == ("train",)
    assert attached.log_options("train") == {"prog_bar": True, "on_step": True, "on_epoch": True}
    assert AttachedMetric("x", "recall", on_step=False).log_options("validation")["on_step"] is False
    with pytest.raises(ConfigError, match="stages must be some of"):
        AttachedMetric("x", "recall", stages=["training"])
    with pytest.raises(ConfigError, match="non-empty name"):
        AttachedMetric("", "recall")
    with pytest.raises(ConfigError, match="same name 'recall@1'"):
        TrainableModel.from_config({"encoder": encoder(), "loss": "triplet", "metrics": ["recall", "recall"]})
    with pytest.raises(ConfigError, match="unknown metric 'log' option"):
        TrainableModel.from_config({"encoder": encoder(), "loss": "triplet",
                                    "metrics": [{"name": "recall", "log": {"progbar": True}}]})


def test_attached_metrics_from_configure_metrics_hook():
    class WithHooks(TrainableModel):
        def configure_encoders(self):
            return encoder()

        def configure_head(self, input_embedding_size):
            from simplug.plugins.heads.gated import GatedHead

            return GatedHead(input_embedding_size)

        def configure_loss(self):
            from simplug.plugins.losses.triplet import TripletLoss

            return TripletLoss()

        def configure_metrics(self):
            return [AttachedMetric("rp", "retrieval_r_precision", stages=["train", "validation"])]

    model = WithHooks()
    data = group_points(n_groups=3, per_group=8)
    trainer = Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(data, batch_size=24),
                            val_dataloader=GroupSimilarityDataLoader(data, batch_size=24), **FIT)
    assert "rp_validation" in trainer.callback_metrics
    assert any(k.startswith("rp_train") for k in trainer.callback_metrics)


class Recording(ConfigTrainableModel):
    def __init__(self, config):
        self.calls = []
        super().__init__(config)

    def process_results(self, embeddings, targets, batch_idx, stage, **kwargs):
        self.calls.append((stage, batch_idx, tuple(embeddings.shape), {k: v.clone() for k, v in targets.items()},
                           embeddings.requires_grad))


def test_process_results_is_called_with_each_batch():
    model = Recording({"encoder": encoder(), "head": "skip_connection", "loss": "triplet"})
    data = group_points(n_groups=4, per_group=5)  # 20 objects: batches of 8, 8, 4
    Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(data, batch_size=8),
                  val_dataloader=GroupSimilarityDataLoader(data, batch_size=10), **{**FIT, "num_sanity_val_steps": 0})
    train = [c for c in model.calls if c[0] == "train"]
    val = [c for c in model.calls if c[0] == "validation"]
    assert {c[0] for c in model.calls} == {"train", "validation"}
    assert [c[1] for c in train] == [0, 1, 2] * 2
    assert [c[2] for c in train] == [(8, 8), (8, 8), (4, 8)] * 2
    assert [c[1] for c in val] == [0, 1] * 2
    expected_groups = torch.tensor([s.group for s in data])
    assert torch.equal(val[0][3]["groups"], expected_groups[:10]) and torch.equal(val[1][3]["groups"], expected_groups[10:])
    assert all(c[4] for c in train)  # training embeddings still carry the graph
