"""An FAQ-like job (the original's documented FAQ tutorial: frozen encoder, cache, skip-connection
head, symmetric MultipleNegativesRankingLoss, attached metrics, PairSampler evaluation) and a
group job (triplet, hard mining, shuffled batches) on generated data, through the `quaterion`
names, against the step-by-step train losses and metrics that the ORIGINAL quaterion 0.1.35 /
quaterion-models 0.1.19 produced for the same script (recorded on torch 2.13, pytorch-lightning
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
        "losses": [3.253626, 3.144968, 2.906958, 3.414881, 2.162788, 3.242417, 3.1338, 2.897758, 3.402952, 2.155239, 3.231956, 3.122149, 2.887965, 3.389963, 2.146912, 3.220835, 3.109467, 2.877311, 3.375704, 2.137757, 3.208777, 3.095511, 2.86562, 3.35995, 2.127665, 3.195552, 3.08005, 2.852712, 3.342454, 2.116506],
        "last_epoch": {"train_loss": 2.116506, "validation_loss": 3.024159, "RetrievalPrecision_validation": 0.17,
                       "RetrievalReciprocalRank_validation": 0.318541, "RetrievalPrecision_train_epoch": 0.176667,
                       "RetrievalReciprocalRank_train_epoch": 0.324387},
        "eval": {"rrk": 0.216851, "rp@1": 0.095},
    },
    "groups": {
        "losses": [1.655854, 1.16561, 2.100421, 1.599519, 1.740106, 1.810388, 0.0, 1.399875, 1.477472, 1.018757, 1.888638, 1.32269, 2.428625, 0.722724, 2.528356, 2.292578, 1.324688, 1.838306, 1.339837, 1.663625, 0.461278, 1.382258, 1.597128, 1.544249, 1.756986, 1.448296, 1.91552, 0.452172, 1.54815, 1.49488, 1.78044, 1.256864, 1.764441, 1.486775, 0.388678, 2.023383, 0.670923, 1.447496, 1.640901, 2.179015, 1.507935, 0.352315],
        "last_epoch": {"train_loss": 0.352315, "validation_loss": 1.886717, "rrp_validation": 0.3875,
                       "rrp_train": 0.456223},
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

    def on_train_batch_end(self, trainer, pl_module, outputs, *args):
        self.losses.append(float(outputs["loss"]))

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
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=6, logger=False, enable_checkpointing=False,
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
