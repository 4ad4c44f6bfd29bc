"""Training through the `quaterion` names on small generated data: the quick-start flow (frozen
encoder, cache, head, group loss, attached metric, evaluator, servable), pair losses, XBM, a loss
with parameters of its own (the startup-search example) and the cache's faithfulness."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch

from compat_site import compat_site, deactivate_compat, install_compat  # noqa: F401

install_compat()  # the classes below subclass the compat distribution's

import pytorch_lightning as pl  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from quaterion import Quaterion, TrainableModel  # noqa: E402
from quaterion.dataset import (GroupSimilarityDataLoader, PairsSimilarityDataLoader,  # noqa: E402
                               SimilarityGroupSample, SimilarityPairSample)
from quaterion.eval.attached_metric import AttachedMetric  # noqa: E402
from quaterion.eval.evaluator import Evaluator  # noqa: E402
from quaterion.eval.group import RetrievalRPrecision  # noqa: E402
from quaterion.eval.pair import RetrievalReciprocalRank  # noqa: E402
from quaterion.eval.samplers.group_sampler import GroupSampler  # noqa: E402
from quaterion.eval.samplers.pair_sampler import PairSampler  # noqa: E402
from quaterion.loss import (ContrastiveLoss, MultipleNegativesRankingLoss, SoftmaxLoss,  # noqa: E402
                            TripletLoss)
from quaterion.train.cache import CacheConfig, CacheType, InMemoryCacheEncoder  # noqa: E402
from quaterion.train.xbm import XbmConfig  # noqa: E402
from quaterion_models import SimilarityModel  # noqa: E402
from quaterion_models.encoders import Encoder  # noqa: E402
from quaterion_models.heads import GatedHead, SkipConnectionHead  # noqa: E402
from quaterion_models.types import CollateFnType  # noqa: E402

deactivate_compat()  # imported; the site is active only while this module's tests run


@pytest.fixture(autouse=True, scope="module")
def _active_compat(compat_site):
    yield


DIM = 8


class PointEncoder(Encoder):
    """A fixed random projection of 5 numbers (frozen unless ``trainable``)."""

    def __init__(self, trainable: bool = False):
        super().__init__()
        self._trainable = trainable
        self.proj = torch.nn.Linear(5, DIM)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(11))
        self.calls = 0

    @property
    def trainable(self) -> bool:
        return self._trainable

    @property
    def embedding_size(self) -> int:
        return DIM

    def get_collate_fn(self) -> CollateFnType:
        return stack_points

    def forward(self, batch):
        self.calls += 1
        return self.proj(batch)

    def save(self, output_path: str) -> None:
        torch.save(self.state_dict(), os.path.join(output_path, "state.pt"))

    @classmethod
    def load(cls, input_path: str) -> "PointEncoder":
        encoder = cls()
        encoder.load_state_dict(torch.load(os.path.join(input_path, "state.pt"), weights_only=True))
        return encoder


def stack_points(batch):
    return torch.stack([torch.as_tensor(p, dtype=torch.float32) for p in batch])


def make_groups(n_groups=4, per_group=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_groups, 5, generator=gen) * 2
    return [SimilarityGroupSample(obj=(centers[g] + torch.randn(5, generator=gen)).tolist(), group=g)
            for g in range(n_groups) for _ in range(per_group)]


def make_pairs(n=24, seed=1):
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(n):
        a = torch.randn(5, generator=gen)
        samples.append(SimilarityPairSample(obj_a=a.tolist(), obj_b=(a + 0.3 * torch.randn(5, generator=gen)).tolist(),
                                            score=1.0, subgroup=i % 3))
    return samples


class ListDataset(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class GroupModel(TrainableModel):
    def __init__(self, cache_type=CacheType.AUTO, xbm=None, lr=0.05, **cache_options):
        self._cache_type, self._xbm, self._lr, self._cache_options = cache_type, xbm, lr, cache_options
        super().__init__()

    def configure_encoders(self):
        return PointEncoder()

    def configure_head(self, input_embedding_size):
        return SkipConnectionHead(input_embedding_size)

    def configure_loss(self):
        return TripletLoss(mining="hard", margin=0.5)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self._lr)

    def configure_caches(self):
        return CacheConfig(cache_type=self._cache_type, **self._cache_options)

    def configure_metrics(self):
        return AttachedMetric("rrp", RetrievalRPrecision(), prog_bar=True, on_epoch=True, on_step=False)

    def configure_xbm(self):
        return self._xbm


class LossHistory(pl.Callback):
    def __init__(self):
        self.train, self.metrics = [], {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train.append(float(outputs["loss"]))

    def on_train_epoch_end(self, trainer, pl_module):
        self.metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})


def improved(history, window=3):
    """Mean loss of the last steps below that of the first steps."""
    first, last = history.train[:window], history.train[-window:]
    return sum(last) / len(last) < sum(first) / len(first)


def trainer(epochs, history=None):
    return pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", callbacks=[history] if history else [],
                      num_sanity_val_steps=0)


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_quick_start_flow_groups_cache_metric_evaluator_servable(tmp_path):
    pl.seed_everything(0, verbose=False)
    data = make_groups()
    train = GroupSimilarityDataLoader(ListDataset(data), batch_size=16, shuffle=True)
    val = GroupSimilarityDataLoader(ListDataset(make_groups(seed=5)), batch_size=16)
    model = GroupModel()
    history = LossHistory()
    base = Evaluator(RetrievalRPrecision(), GroupSampler(log_progress=False)).evaluate(data, model.model)
    Quaterion.fit(model, trainer(12, history), train, val)

    assert improved(history)
    assert "rrp_train" in history.metrics and "rrp_validation" in history.metrics and "validation_loss" in history.metrics
    assert isinstance(model.model.encoders["default"], PointEncoder)  # the cache is unwrapped after fit
    result = Quaterion.evaluate(Evaluator({"rrp": RetrievalRPrecision()}, GroupSampler(log_progress=False)), data,
                                model.model)
    assert float(result["rrp"]) > float(base["RetrievalRPrecision"])
    embeddings = model.model.encode([s.obj for s in data], to_numpy=False)
    direct = RetrievalRPrecision().compute(embeddings, torch.LongTensor([s.group for s in data]))
    assert torch.isclose(result["rrp"], direct)

    model.save_servable(str(tmp_path / "servable"))
    served = SimilarityModel.load(str(tmp_path / "servable"))
    assert np.allclose(served.encode([s.obj for s in data[:5]]), embeddings[:5].numpy(), atol=1e-5)

    # the same model saved in simplug's format: the drop-in's head recorded as a plugin, served by simplug
    from simplug.serving import SimilarityModel as NativeModel

    native_path = model.model.to_simplug().save(str(tmp_path / "native"), training={"from": "quaterion"})
    manifest = json.loads((tmp_path / "native" / "manifest.json").read_text())
    head = next(c for c in manifest["components"] if c["role"] == "head")
    assert (head["distribution"], head["name"]) == ("simplug-quaterion-compat", "quaterion_skip_connection")
    native = NativeModel.load(native_path, trust_local_code=True)
    assert np.allclose(native.encode([s.obj for s in data[:5]]), embeddings[:5].numpy(), atol=1e-5)


def test_cache_fills_once_and_trains_like_no_cache(tmp_path):
    data = make_groups()
    heads = {}
    for cache_type in (CacheType.CPU, CacheType.NONE):
        pl.seed_everything(3, verbose=False)
        model = GroupModel(cache_type=cache_type)
        loader = GroupSimilarityDataLoader(ListDataset(data), batch_size=8, shuffle=True)
        encoder = model.model.encoders["default"]
        if cache_type == CacheType.NONE:
            # the fill pass iterates each loader once, which draws one base seed from the global RNG
            # (as the original's prediction pass did); draw it here too so both runs shuffle alike
            torch.empty((), dtype=torch.int64).random_()
        Quaterion.fit(model, trainer(3), loader)
        heads[cache_type] = {k: v.clone() for k, v in model.model.head.state_dict().items()}
        if cache_type == CacheType.CPU:
            assert encoder.calls == 1  # one fill batch of 32, never again during 3 epochs
        else:
            assert encoder.calls == 3 * 4
    for key, value in heads[CacheType.CPU].items():
        assert torch.allclose(value, heads[CacheType.NONE][key], atol=1e-5), key


def test_cache_batches_carry_keys_and_forward_equals_the_encoder():
    data = make_pairs(6)
    loader = PairsSimilarityDataLoader(ListDataset(data), batch_size=3)

    class PairModel(GroupModel):
        def configure_loss(self):
            return ContrastiveLoss()

        def configure_metrics(self):
            return []

    model = PairModel(cache_type=CacheType.CPU)
    model.setup_cache(trainer=None, train_dataloader=loader, val_dataloader=None)
    cache = model.model.encoders["default"]
    assert isinstance(cache, InMemoryCacheEncoder) and len(cache._cache) == 12
    batch, labels = next(iter(loader))
    keys = batch["data"]["default"]
    assert isinstance(keys, list) and len(keys) == 6 and all(isinstance(k, int) for k in keys)
    reference = PairModel(cache_type=CacheType.NONE)
    reference.model.head.load_state_dict(model.model.head.state_dict())
    reference.model.encoders["default"].load_state_dict(cache.wrapped_encoder.state_dict())
    plain = PairsSimilarityDataLoader(ListDataset(data), batch_size=3)
    reference.setup_dataloader(plain)
    features, _ = next(iter(plain))
    assert torch.allclose(model.model(batch), reference.model(features), atol=1e-6)


def test_cache_key_extractor_and_save_dir_reuse(tmp_path):
    data = make_groups(per_group=4)
    for run in range(2):
        model = GroupModel(cache_type=CacheType.CPU, key_extractors=lambda obj: tuple(round(v, 6) for v in obj),
                           save_dir=str(tmp_path / "cache"))
        loader = GroupSimilarityDataLoader(ListDataset(data), batch_size=8)
        encoder = model.model.encoders["default"]
        Quaterion.fit(model, trainer(1), loader)
        assert encoder.calls == (1 if run == 0 else 0)  # the second run reads the saved cache
    assert (tmp_path / "cache" / "default.cache.pt").exists()


@pytest.mark.parametrize("loss", [ContrastiveLoss(margin=0.5), MultipleNegativesRankingLoss(symmetric=True)])
def test_pair_training_and_pair_evaluation(loss):
    pl.seed_everything(1, verbose=False)
    data = make_pairs()

    class PairModel(TrainableModel):
        def configure_encoders(self):
            return PointEncoder(trainable=True)

        def configure_head(self, input_embedding_size):
            return GatedHead(input_embedding_size)

        def configure_loss(self):
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.model.parameters(), lr=0.05)

    model = PairModel()
    history = LossHistory()
    loader = PairsSimilarityDataLoader(ListDataset(data), batch_size=8, shuffle=True)
    Quaterion.fit(model, trainer(8, history), loader)
    assert improved(history)
    assert any(p.requires_grad for p in model.model.encoders["default"].parameters())
    result = Evaluator(RetrievalReciprocalRank(), PairSampler(log_progress=False, distinguish=True)).evaluate(data, model.model)
    assert 0 < float(result["RetrievalReciprocalRank"]) <= 1


def test_xbm_adds_the_memory_loss():
    pl.seed_everything(2, verbose=False)
    model = GroupModel(cache_type=CacheType.CPU, xbm=XbmConfig(buffer_size=40, start_iteration=0, weight=1.0))
    Quaterion.fit(model, trainer(3), GroupSimilarityDataLoader(ListDataset(make_groups()), batch_size=16, shuffle=True))
    memory, groups = model._xbm_buffer.get()
    assert model._xbm_buffer.is_full and memory.shape == (40, DIM) and groups.shape == (40,)


def test_loss_with_parameters_startup_search_style():
    pl.seed_everything(4, verbose=False)

    class Model(TrainableModel):
        def configure_encoders(self):
            return PointEncoder()

        def configure_head(self, input_embedding_size):
            return GatedHead(input_embedding_size)

        def configure_loss(self):
            return SoftmaxLoss(self.model.head.output_size, 4)

        def configure_optimizers(self):
            return torch.optim.Adam([{"params": self.model.parameters(), "lr": 0.01},
                                     {"params": self.loss.parameters(), "lr": 0.1}])

    model = Model()
    history = LossHistory()
    Quaterion.fit(model, trainer(10, history), GroupSimilarityDataLoader(ListDataset(make_groups()), batch_size=16, shuffle=True))
    assert improved(history)


def test_fit_refuses_mismatched_loader_and_loss():
    model = GroupModel()
    with pytest.raises(NotImplementedError, match="non-PairwiseLoss"):
        Quaterion.fit(model, trainer(1), PairsSimilarityDataLoader(ListDataset(make_pairs(4)), batch_size=2))


def test_trainer_defaults_match_the_original():
    defaults = Quaterion.trainer_defaults(GroupModel(), GroupSimilarityDataLoader(ListDataset(make_groups()), batch_size=8))
    assert [type(c).__name__ for c in defaults["callbacks"]] == ["QuaterionProgressBar", "EarlyStopping", "ModelSummary"]
    assert defaults["callbacks"][1].monitor == "validation_loss"
    assert defaults["max_epochs"] == -1 and defaults["log_every_n_steps"] == 4
    assert defaults["enable_checkpointing"] is False  # frozen and cached: nothing to checkpoint


def test_checkpoint_and_resume_with_a_saved_cache(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    data = make_groups(per_group=4)
    for run, (epochs, ckpt) in enumerate([(1, None), (2, str(tmp_path / "ckpt" / "test.ckpt"))]):
        model = GroupModel(cache_type=CacheType.AUTO, save_dir=str(tmp_path / "cache"))
        fit_trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, accelerator="cpu",
                                 enable_model_summary=False,
                                 callbacks=[ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), filename="test")])
        val = GroupSimilarityDataLoader(ListDataset(data), batch_size=8) if run == 0 else None
        Quaterion.fit(model, fit_trainer, GroupSimilarityDataLoader(ListDataset(data), batch_size=8), val, ckpt_path=ckpt)
        assert fit_trainer.current_epoch == epochs
    assert (tmp_path / "ckpt" / "test.ckpt").exists()


def test_xbm_buffer_wraps_like_the_original():
    """A batch that does not fit before the end: its last rows fill the tail from the pointer on,
    its first ``excess`` rows the head (the original's order, which decides what later writes keep)."""
    from quaterion.train.xbm import XbmDevice
    from quaterion.train.xbm.xbm_buffer import XbmBuffer

    size = 5
    buffer = XbmBuffer(XbmConfig(buffer_size=size, device=XbmDevice.CPU), embedding_size=2)
    slots, pointer, full = [None] * size, 0, False
    for step in range(5):
        rows = list(range(3 * step, 3 * step + 3))
        end = pointer + len(rows)
        if end > size:
            excess = end - size
            for offset, row in enumerate(rows[excess:]):
                slots[pointer + offset] = row
            for offset, row in enumerate(rows[:excess]):
                slots[offset] = row
            pointer = excess
        else:
            for offset, row in enumerate(rows):
                slots[pointer + offset] = row
            pointer = end % size
        full = full or end >= size
        values = torch.tensor(rows, dtype=torch.float32)
        buffer.queue(torch.stack([values, values], dim=1), values.long())
        embeddings, groups = buffer.get()
        assert groups.tolist() == [s for s in (slots if full else slots[:pointer])]
        assert torch.equal(embeddings[:, 0].long(), groups)
    assert buffer.is_full


class DropoutEncoder(PointEncoder):
    def __init__(self):
        super().__init__()
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, batch):
        return self.drop(self.proj(batch))


def test_cache_fill_encodes_in_eval_mode_without_gradients():
    class Model(GroupModel):
        def configure_encoders(self):
            return DropoutEncoder()

    data = make_groups(per_group=3)
    model = Model(cache_type=CacheType.CPU)
    loader = GroupSimilarityDataLoader(ListDataset(data), batch_size=4)
    model.setup_cache(trainer=None, train_dataloader=loader, val_dataloader=None)
    cache = model.model.encoders["default"]
    encoder = cache.wrapped_encoder
    assert encoder.training  # the mode is restored after the fill
    rows = cache(list(range(0, 2 * len(data), 2)))
    assert not rows.requires_grad
    encoder.eval()
    with torch.no_grad():
        assert torch.allclose(rows, encoder(stack_points([s.obj for s in data])))
