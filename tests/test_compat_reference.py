"""An FAQ-like job (the original's documented FAQ tutorial: frozen encoder, cache, skip-connection
head, symmetric MultipleNegativesRankingLoss, attached metrics, PairSampler evaluation) and a
group job (triplet, hard mining, shuffled batches) on generated data, through the `quaterion`
names, against the step-by-step train losses and metrics that the ORIGINAL quaterion 0.1.35 /
quaterion-models 0.1.19 produced for the same script, 3 epochs (recorded on torch 2.13, pytorch-lightning
1.9.5; the original's metric names printed as ``train_loss`` etc. on the Python versions it supports).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from compat_site import compat_site, deactivate_compat, install_compat  # noqa: F401

install_compat()

import pytorch_lightning as pl  # noqa: E402

from quaterion import Quaterion, TrainableModel  # noqa: E402
from quaterion.dataset import (GroupSimilarityDataLoader, PairsSimilarityDataLoader,  # noqa: E402
                               SimilarityGroupSample, SimilarityPairSample)
from quaterion.eval.attached_metric import AttachedMetric  # noqa: E402
from quaterion.eval.evaluator import Evaluator  # noqa: E402
from quaterion.eval.group import RetrievalRPrecision  # noqa: E402
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank  # noqa: E402
from quaterion.eval.samplers.pair_sampler import PairSampler  # noqa: E402
from quaterion.loss import MultipleNegativesRankingLoss, TripletLoss  # noqa: E402
from quaterion.train.cache import CacheConfig, CacheType  # noqa: E402
from quaterion_models.encoders import Encoder  # noqa: E402
from quaterion_models.heads import SkipConnectionHead  # noqa: E402

deactivate_compat()  # imported; the site is active only while this module's tests run


@pytest.fixture(autouse=True, scope="module")
def _active_compat(compat_site):
    yield


ORIGINAL = {
    "pairs": {
        "losses": [
            3.253626, 3.144968, 2.906958, 3.414881, 2.162788, 3.242417, 3.1338, 2.897758, 3.402952, 2.155239,
            3.231956, 3.122149, 2.887965, 3.389963, 2.146912,
        ],
        "last_epoch": {"train_loss": 2.146912, "RetrievalPrecision_train": 0.352273, "RetrievalReciprocalRank_train": 0.472274, "validation_loss": 3.063021, "RetrievalPrecision_validation": 0.165, "RetrievalReciprocalRank_validation": 0.314275, "RetrievalPrecision_train_epoch": 0.175, "RetrievalReciprocalRank_train_epoch": 0.321687},
        "eval": {"rrk": 0.215292, "rp@1": 0.095},
    },
    "groups": {
        "losses": [
            1.655854, 1.16561, 2.100421, 1.599519, 1.740106, 1.810388, 0.0, 1.399875, 1.477472, 1.018757,
            1.888638, 1.32269, 2.428625, 0.722724, 2.528356, 2.292578, 1.324688, 1.838306, 1.339837, 1.663625,
            0.461278,
        ],
        "last_epoch": {"train_loss": 0.461278, "validation_loss": 1.916373, "rrp_validation": 0.3875, "rrp_train": 0.479335},
    },
}


class TextLikeEncoder(Encoder):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(16, 12)
        self.drop = nn.Dropout(0.3)

    @property
    def trainable(self):
        return False

    @property
    def embedding_size(self):
        return 12

    def get_collate_fn(self):
        return collate

    def forward(self, batch):
        return self.drop(torch.tanh(self.proj(batch)))

    def save(self, path):
        pass

    @classmethod
    def load(cls, path):
        return cls()


def collate(batch):
    return torch.tensor(np.array(batch), dtype=torch.float32)




def pairs(rng, topics, n, offset):
    out = []
    for i in range(n):
        t = topics[(i + offset) % 40]
        out.append(SimilarityPairSample(obj_a=(t + 0.8 * rng.normal(size=16)).tolist(),
                                        obj_b=(t + 0.8 * rng.normal(size=16)).tolist(), score=1.0))
    return out


def groups(rng, topics, n):
    return [SimilarityGroupSample(obj=(topics[i % 10] + rng.normal(size=16)).tolist(), group=i % 10) for i in range(n)]


class ListDataset(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class Model(TrainableModel):
    def __init__(self, kind):
        self.kind = kind
        super().__init__()

    def configure_metrics(self):
        if self.kind == "pairs":
            return [AttachedMetric("RetrievalPrecision", RetrievalPrecision(k=1), prog_bar=True, on_epoch=True),
                    AttachedMetric("RetrievalReciprocalRank", RetrievalReciprocalRank(), prog_bar=True, on_epoch=True)]
        return AttachedMetric("rrp", RetrievalRPrecision(), on_epoch=True, on_step=False)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=1e-2)

    def configure_loss(self):
        return MultipleNegativesRankingLoss(symmetric=True) if self.kind == "pairs" else TripletLoss(mining="hard", margin=0.5)

    def configure_encoders(self):
        return TextLikeEncoder()

    def configure_head(self, size):
        return SkipConnectionHead(size)

    def configure_caches(self):
        return CacheConfig(CacheType.AUTO, batch_size=256)


class Record(pl.Callback):
    def __init__(self):
        self.losses = []
        self.epochs = []
        self.train_epochs = []

    def on_train_batch_end(self, trainer, pl_module, outputs, *args):
        self.losses.append(float(outputs["loss"]))

    def on_train_epoch_end(self, trainer, pl_module):
        self.train_epochs.append({k: round(float(v), 6) for k, v in trainer.callback_metrics.items()})

    def on_validation_epoch_end(self, trainer, pl_module):
        self.epochs.append({k: round(float(v), 6) for k, v in trainer.callback_metrics.items()})



def run_job(kind):
    rng = np.random.default_rng(0)
    topics = rng.normal(size=(40, 16))
    pl.seed_everything(42, workers=True)
    model = Model(kind)
    if kind == "pairs":
        train, val = pairs(rng, topics, 300, 0), pairs(rng, topics, 100, 7)
        train_dl = PairsSimilarityDataLoader(ListDataset(train), batch_size=64)
        val_dl = PairsSimilarityDataLoader(ListDataset(val), batch_size=64)
    else:
        train, val = groups(rng, topics, 200), groups(rng, topics, 80)
        train_dl = GroupSimilarityDataLoader(ListDataset(train), batch_size=32, shuffle=True)
        val_dl = GroupSimilarityDataLoader(ListDataset(val), batch_size=40)
    record = Record()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=2,
                         log_every_n_steps=2, callbacks=[record])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Quaterion.fit(model, trainer, train_dl, val_dl)
    return model, val, record


@pytest.mark.parametrize("kind", ["pairs", "groups"])
def test_reproduces_the_originals_trajectory(kind):
    model, val, record = run_job(kind)
    expected = ORIGINAL[kind]
    assert len(record.losses) == len(expected["losses"])
    assert np.allclose(record.losses, expected["losses"], atol=1e-4)
    last = record.epochs[-1]
    for name, value in expected["last_epoch"].items():
        assert last[name] == pytest.approx(value, abs=1e-4), name
    if kind == "pairs":
        results = Quaterion.evaluate(Evaluator({"rrk": RetrievalReciprocalRank(), "rp@1": RetrievalPrecision(k=1)},
                                               PairSampler(log_progress=False)), val, model.model)
        for name, value in expected["eval"].items():
            assert float(results[name]) == pytest.approx(value, abs=1e-4), name


# ---------------------------------------------------------------------------------------------
# The flows of the original's example training scripts on generated data: cifar100/train_with_xbm
# (trainable encoder, EmptyHead, semi-hard triplet, cross-batch memory), startup_search/train (frozen
# encoder, GatedHead, SoftmaxLoss whose own parameters train at 10x the rate) and cars/train
# (SkipConnectionHead with dropout, hard triplet, cache with save_dir, R-precision attached), each
# with shuffled batches and a trainer built from Quaterion.trainer_defaults. Losses and metrics the
# original produced for the same flows (2 epochs):
ORIGINAL_EXAMPLES = {
    "xbm": {
        "losses": [0.250651, 0.229927, 0.257877, 0.218657, 0.41049, 0.413223, 0.401924, 0.349106, 0.451812, 0.380384],
        "epochs": [
            {"train_loss": 0.41049, "validation_loss": 0.193291, "rrp_validation": 0.598722, "rrp_train": 0.452642}, {"train_loss": 0.380384, "validation_loss": 0.164964, "rrp_validation": 0.634115, "rrp_train": 0.534622},
        ],
    },
    "softmax": {
        "losses": [1.880105, 1.293994, 1.205753, 1.150522, 0.857093, 0.69856, 1.065443, 0.901035, 0.892644, 0.809534],
        "epochs": [
            {"train_loss": 0.857093, "validation_loss": 0.727367}, {"train_loss": 0.809534, "validation_loss": 0.535206},
        ],
    },
    "cars": {
        "losses": [4.76573, 3.503116, 5.541836, 4.101674, 4.227349, 3.627563, 4.561958, 3.491899, 3.098408, 6.612705],
        "epochs": [
            {"train_loss": 4.227349, "validation_loss": 3.419109, "rrp_validation": 0.556818, "rrp_train": 0.439948}, {"train_loss": 6.612705, "validation_loss": 3.416357, "rrp_validation": 0.558239, "rrp_train": 0.444996},
        ],
    },
}


from quaterion.dataset import SimilarityGroupDataset  # noqa: E402
from quaterion.loss import SoftmaxLoss  # noqa: E402
from quaterion.train.xbm import XbmConfig  # noqa: E402
from quaterion_models.heads import EmptyHead, GatedHead  # noqa: E402


class VecEncoder(Encoder):
    def __init__(self, trainable):
        super().__init__()
        self._trainable = trainable
        self.net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 8))

    @property
    def trainable(self):
        return self._trainable

    @property
    def embedding_size(self):
        return 8

    def forward(self, batch):
        return self.net(batch)

    def save(self, path):
        pass

    @classmethod
    def load(cls, path):
        return cls(False)


class Labelled(Dataset):
    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        centers = np.random.default_rng(99).normal(size=(6, 10)) * 1.5
        self.labels = rng.integers(0, 6, size=n)
        self.x = (centers[self.labels] + rng.normal(size=(n, 10))).astype(np.float32)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.from_numpy(self.x[i]), int(self.labels[i])


class ExampleModel(TrainableModel):
    def __init__(self, kind, cache_dir=None):
        self.kind, self.cache_dir = kind, cache_dir
        super().__init__()

    def configure_encoders(self):
        return VecEncoder(trainable=self.kind == "xbm")

    def configure_head(self, size):
        return {"xbm": EmptyHead, "softmax": GatedHead}.get(self.kind, lambda s: SkipConnectionHead(s, dropout=0.1))(size)

    def configure_loss(self):
        if self.kind == "xbm":
            return TripletLoss(mining="semi_hard")
        if self.kind == "softmax":
            return SoftmaxLoss(self.model.head.output_size, 6)
        return TripletLoss(mining="hard", margin=0.5)

    def configure_xbm(self):
        return XbmConfig(buffer_size=64, start_iteration=2) if self.kind == "xbm" else None

    def configure_caches(self):
        return CacheConfig(cache_type=CacheType.AUTO, save_dir=self.cache_dir, batch_size=32) if self.kind == "cars" else None

    def configure_metrics(self):
        if self.kind == "softmax":
            return []
        return AttachedMetric("rrp", metric=RetrievalRPrecision(), prog_bar=True, on_epoch=True, on_step=False)

    def configure_optimizers(self):
        if self.kind == "softmax":
            return torch.optim.Adam([{"params": self.model.parameters(), "lr": 3e-3},
                                     {"params": self.loss.parameters(), "lr": 3e-2}])
        return torch.optim.Adam(self.model.parameters(), 3e-3, weight_decay=0.0005)




@pytest.mark.parametrize("kind", ["xbm", "softmax", "cars"])
def test_example_flows_reproduce_the_original(kind, tmp_path):
    pl.seed_everything(7, workers=True)
    model = ExampleModel(kind, cache_dir=str(tmp_path / "cache"))
    train = GroupSimilarityDataLoader(SimilarityGroupDataset(Labelled(240, 1)), batch_size=48, shuffle=True)
    val = GroupSimilarityDataLoader(SimilarityGroupDataset(Labelled(96, 2)), batch_size=48, shuffle=False)
    kwargs = Quaterion.trainer_defaults(model, train)
    kwargs["callbacks"] = [c for c in kwargs["callbacks"]
                           if "ProgressBar" not in type(c).__name__ and "Summary" not in type(c).__name__]
    record = Record()
    kwargs["callbacks"].append(record)
    kwargs.update(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                  default_root_dir=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Quaterion.fit(trainable_model=model, trainer=pl.Trainer(**kwargs), train_dataloader=train, val_dataloader=val)
    expected = ORIGINAL_EXAMPLES[kind]
    assert np.allclose(record.losses, expected["losses"], atol=1e-4)
    for name, value in expected["epochs"][-1].items():
        assert record.train_epochs[-1][name] == pytest.approx(value, abs=1e-4), name
    if kind == "cars":
        assert (tmp_path / "cache" / "default.cache.pt").exists()
