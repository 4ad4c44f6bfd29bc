from __future__ import annotations

import pytest
import torch
from torch import nn

from data import group_points, pair_points
from simplug import (
    Evaluator,
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
    Quaterion,
    SimilarityGroupSample,
    SimilarityPairSample,
    TrainableModel,
)
from simplug.components.encoder import Encoder
from simplug.errors import ComponentNotFoundError, ConfigError, DataError
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.plugins.heads.skip_connection import SkipConnectionHead
from simplug.plugins.losses.triplet import TripletLoss

FIT = dict(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


def encoder(dim: int = 12, out: int = 16, trainable: bool = False) -> TorchModuleEncoder:
    torch.manual_seed(0)
    return TorchModuleEncoder(nn.Sequential(nn.Linear(dim, out), nn.Tanh()), input_size=dim, trainable=trainable)


class HandWritten(TrainableModel):
    def __init__(self, lr: float = 1e-2):
        self.lr = lr
        super().__init__()

    def configure_encoders(self):
        return encoder()

    def configure_head(self, input_embedding_size):
        return SkipConnectionHead(input_embedding_size, n_layers=2)

    def configure_loss(self):
        return TripletLoss(mining="all")

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.head.parameters(), lr=self.lr)


CONFIG = {
    "head": {"name": "skip_connection", "n_layers": 2},
    "loss": {"name": "triplet", "mining": "all"},
    "optimizer": {"name": "adam", "lr": 1e-2},
    "metrics": [{"name": "retrieval_precision", "k": 1}],
}


def test_config_and_hooks_build_the_same_model_with_the_same_records(tmp_path):
    by_hooks = HandWritten()
    by_config = TrainableModel.from_config({**CONFIG, "encoder": encoder()})
    assert type(by_hooks.model.head) is type(by_config.model.head)
    assert by_hooks.model.head.get_config_dict() == by_config.model.head.get_config_dict()
    for a, b in zip(by_hooks.model.state_dict().values(), by_config.model.state_dict().values()):
        assert torch.equal(a, b)
    import json

    by_hooks.save_servable(str(tmp_path / "a"))
    by_config.save_servable(str(tmp_path / "b"))
    comps_a = json.loads((tmp_path / "a" / "manifest.json").read_text())["components"]
    comps_b = json.loads((tmp_path / "b" / "manifest.json").read_text())["components"]
    assert comps_a == comps_b


def test_training_improves_held_out_retrieval():
    train, held_out = group_points(seed=1), group_points(per_group=8, seed=2)
    model = TrainableModel.from_config({**CONFIG, "encoder": encoder()})
    evaluator = Evaluator([{"name": "retrieval_precision", "k": 1}, "retrieval_reciprocal_rank"])
    before = Quaterion.evaluate(evaluator, held_out, model)
    trainer = Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(train, batch_size=60, shuffle=True),
                            val_dataloader=GroupSimilarityDataLoader(held_out, batch_size=48), **{**FIT, "max_epochs": 15})
    after = Quaterion.evaluate(evaluator, held_out, model)
    assert trainer.current_epoch >= 1
    assert "retrieval_precision@1_validation" in trainer.callback_metrics
    assert after["retrieval_reciprocal_rank"] > before["retrieval_reciprocal_rank"]
    assert not any(p.requires_grad for p in model.model.encoders["default"].parameters())


def test_pair_training_with_multiple_negatives_ranking():
    model = TrainableModel.from_config({"encoder": encoder(trainable=True), "head": "empty",
                                        "loss": {"name": "multiple_negatives_ranking", "symmetric": True}})
    before = [p.clone() for p in model.model.encoders["default"].parameters()]
    Quaterion.fit(model, train_dataloader=PairsSimilarityDataLoader(pair_points(), batch_size=16), **FIT)
    after = list(model.model.encoders["default"].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


def test_loader_and_loss_kinds_must_match():
    model = TrainableModel.from_config({**CONFIG, "encoder": encoder()})
    with pytest.raises(ConfigError, match="group loss and needs a GroupSimilarityDataLoader"):
        Quaterion.fit(model, train_dataloader=PairsSimilarityDataLoader(pair_points()), **FIT)
    pair_model = TrainableModel.from_config({"encoder": encoder(), "head": "skip_connection", "loss": "contrastive"})
    with pytest.raises(ConfigError, match="pair loss and needs a PairsSimilarityDataLoader"):
        Quaterion.fit(pair_model, train_dataloader=GroupSimilarityDataLoader(group_points()), **FIT)


def test_wrong_sample_type_and_empty_data():
    with pytest.raises(DataError, match="use GroupSimilarityDataLoader"):
        PairsSimilarityDataLoader(group_points())
    with pytest.raises(DataError, match="use PairsSimilarityDataLoader"):
        GroupSimilarityDataLoader(pair_points())
    with pytest.raises(DataError, match="needs SimilarityGroupSample items.*dict"):
        GroupSimilarityDataLoader([{"obj": 1, "group": 2}])
    with pytest.raises(DataError, match="empty data set"):
        GroupSimilarityDataLoader([])
    mixed = group_points()[:3] + [SimilarityPairSample(1, 2)]
    loader = GroupSimilarityDataLoader(mixed, batch_size=4)
    with pytest.raises(DataError, match="item 3 of a batch is a SimilarityPairSample"):
        next(iter(loader))


def test_encoder_output_size_must_match_the_head():
    with pytest.raises(ConfigError, match="produce embeddings of size 16.*input_embedding_size=10"):
        TrainableModel.from_config({**CONFIG, "encoder": encoder(), "head": {"name": "skip_connection", "input_embedding_size": 10}})


def test_encoder_that_lies_about_its_size_is_caught_at_the_first_batch():
    liar = TorchModuleEncoder(nn.Linear(12, 5), embedding_size=16)
    model = TrainableModel.from_config({**CONFIG, "encoder": liar})
    with pytest.raises(ConfigError, match=r"returned a tensor of shape \(.*, 5\) but declares embedding_size=16"):
        model.model.encode([torch.zeros(12)])


def test_config_errors_name_the_problem():
    with pytest.raises(ComponentNotFoundError, match="Did you mean: triplet"):
        TrainableModel.from_config({**CONFIG, "encoder": encoder(), "loss": "triplett"})
    with pytest.raises(ConfigError, match="unknown argument 'n_layer'.*Did you mean 'n_layers'"):
        TrainableModel.from_config({**CONFIG, "encoder": encoder(), "head": {"name": "skip_connection", "n_layer": 2}})
    with pytest.raises(ConfigError, match="unknown config key"):
        TrainableModel.from_config({**CONFIG, "encoder": encoder(), "haed": "empty"})
    with pytest.raises(ConfigError, match="needs a 'loss'"):
        TrainableModel.from_config({"encoder": encoder()})
    with pytest.raises(ConfigError, match="unknown optimizer"):
        TrainableModel.from_config({**CONFIG, "encoder": encoder(), "optimizer": {"name": "adamz"}}).configure_optimizers()
    with pytest.raises(ConfigError, match="needs the argument"):
        TrainableModel.from_config({**CONFIG, "encoder": {"name": "torch_module"}})


def test_nan_embeddings_stop_training_with_a_clear_error():
    bad = [SimilarityGroupSample(obj=torch.full((12,), float("nan")), group=i % 2) for i in range(8)]
    model = TrainableModel.from_config({**CONFIG, "encoder": encoder()})
    with pytest.raises(DataError, match="NaN or inf embeddings at train step 0"):
        Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(bad, batch_size=8), **FIT)


def test_a_user_encoder_subclass_trains(tmp_path):
    class Doubler(Encoder):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(12))

        trainable = True
        embedding_size = 12

        def forward(self, batch):
            return batch * self.scale

    model = TrainableModel.from_config({"encoder": Doubler(), "loss": {"name": "triplet", "mining": "hard"}})
    Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(group_points(), batch_size=40), **FIT)
    assert not torch.equal(model.model.encoders["default"].scale, torch.ones(12))


def test_trainer_defaults_are_quiet_and_sensible():
    model = TrainableModel.from_config({**CONFIG, "encoder": encoder()})
    defaults = Quaterion.trainer_defaults(model, GroupSimilarityDataLoader(group_points(), batch_size=40))
    assert defaults["enable_checkpointing"] is False  # only frozen encoders
    assert defaults["log_every_n_steps"] == 3
