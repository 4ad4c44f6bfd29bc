"""Loader workers started with ``spawn`` (the default on macOS and Windows) get the model's
collate by pickling: it must be a picklable object, not a closure."""
from __future__ import annotations

import pickle

import torch
from torch import nn
from torch.utils.data import DataLoader

from data import group_points
from simplug import GroupSimilarityDataLoader, Quaterion, TrainableModel
from simplug.model.similarity_model import CollateFnType, ModelCollate
from simplug.plugins.encoders.torch_module import TorchModuleEncoder


def model() -> TrainableModel:
    torch.manual_seed(0)
    return TrainableModel.from_config({
        "encoder": TorchModuleEncoder(nn.Linear(12, 8), embedding_size=8),
        "head": "skip_connection",
        "loss": "triplet",
        "cache": None,
    })


def test_the_models_collate_pickles_and_collates_the_same_after():
    collate = model().model.get_collate_fn()
    assert isinstance(collate, ModelCollate)
    records = [torch.randn(12) for _ in range(5)]
    again = pickle.loads(pickle.dumps(collate))
    assert torch.equal(again(records)["default"], collate(records)["default"])


def test_a_plain_loader_with_spawned_workers_uses_the_collate():
    collate: CollateFnType = model().model.get_collate_fn()
    records = [torch.randn(12) for _ in range(12)]
    loader = DataLoader(records, batch_size=4, num_workers=2, multiprocessing_context="spawn", collate_fn=collate)
    batches = [batch["default"] for batch in loader]
    assert torch.equal(torch.cat(batches), torch.stack(records))


def test_training_with_two_spawned_loader_workers():
    trainable = model()
    loader = GroupSimilarityDataLoader(group_points(per_group=4), batch_size=12, num_workers=2,
                                       multiprocessing_context="spawn", persistent_workers=False)
    before = {k: v.clone() for k, v in trainable.model.head.state_dict().items()}
    trainer = Quaterion.fit(trainable, train_dataloader=loader, max_epochs=1, logger=False,
                            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    assert trainer.global_step == len(loader)
    after = trainable.model.head.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
