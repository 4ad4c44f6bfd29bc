"""The Lightning details that ``simplug.training.lightning_speed`` relies on. Each test fails when
a Lightning upgrade changes one of them, so a speed-up never silently becomes dead code or a
behaviour change."""
from __future__ import annotations

import inspect

import pytorch_lightning as pl
import torch
from torch import nn

from data import group_points
from simplug import GroupSimilarityDataLoader, Quaterion, TrainableModel
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.training.cache.config import CacheConfig
from simplug.training.lightning_speed import PLAIN_TYPES, FastStepHooks, NoProfiler

FIT = dict(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
           enable_checkpointing=False)


def cached_model() -> TrainableModel:
    torch.manual_seed(0)
    return TrainableModel.from_config({
        "encoder": TorchModuleEncoder(nn.Linear(12, 8), embedding_size=8),
        "head": {"name": "skip_connection"},
        "loss": "triplet",
        "cache": CacheConfig(),
    })


def loader() -> GroupSimilarityDataLoader:
    return GroupSimilarityDataLoader(group_points(per_group=6), batch_size=12, shuffle=True)


class CountingProfiler(NoProfiler):
    def __init__(self) -> None:
        super().__init__()
        self.entered = 0

    def profile(self, action_name):
        self.entered += 1
        return super().profile(action_name)


def test_lightning_enters_the_profiler_around_hooks_every_step():
    profiler = CountingProfiler()
    model = cached_model()
    trainer = Quaterion.fit(model, train_dataloader=loader(), profiler=profiler, **FIT)
    assert trainer.profiler is profiler
    steps = trainer.global_step
    assert steps > 0
    # the reason NoProfiler exists: many profile() calls per step
    assert profiler.entered >= 10 * steps


def test_lightning_writes_plain_attributes_through_the_fast_path_and_modules_stay_registered(monkeypatch):
    fast = []
    original = FastStepHooks.__setattr__

    def recording(self, name, value):
        if type(value) in PLAIN_TYPES and name in self.__dict__:
            fast.append(name)
        original(self, name, value)

    monkeypatch.setattr(FastStepHooks, "__setattr__", recording)
    model = cached_model()
    keys_before = set(model.state_dict())
    trainer = Quaterion.fit(model, train_dataloader=loader(), **FIT)
    assert len(fast) >= trainer.global_step  # Lightning still sets plain attributes every step
    assert set(model.state_dict()) == keys_before  # no parameter, buffer or module went astray
    model.some_module = nn.Linear(2, 2)  # a module still registers through nn.Module
    assert "some_module" in model._modules


def test_the_clipping_hook_keeps_lightnings_signature():
    ours = inspect.signature(FastStepHooks.configure_gradient_clipping)
    theirs = inspect.signature(pl.LightningModule.configure_gradient_clipping)
    assert list(ours.parameters) == list(theirs.parameters)


def test_training_steps_signature_is_stored_and_lightning_reads_signatures_through_inspect(monkeypatch):
    from pytorch_lightning.utilities import signature_utils

    seen = []
    original = signature_utils.is_param_in_hook_signature

    def recording(hook_fx, param, *args, **kwargs):
        seen.append(getattr(hook_fx, "__name__", ""))
        return original(hook_fx, param, *args, **kwargs)

    # Lightning's loop asks whether training_step takes batch_idx through this helper
    monkeypatch.setattr(signature_utils, "is_param_in_hook_signature", recording)
    from pytorch_lightning.loops import training_epoch_loop

    monkeypatch.setattr(training_epoch_loop, "is_param_in_hook_signature", recording)
    Quaterion.fit(cached_model(), train_dataloader=loader(), **FIT)
    assert "training_step" in seen
    assert "__signature__" in vars(TrainableModel.training_step)
    assert inspect.signature(TrainableModel.training_step) is TrainableModel.training_step.__signature__
    assert list(inspect.signature(TrainableModel.training_step).parameters) == ["self", "batch", "batch_idx"]
