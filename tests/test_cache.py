from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from data import group_points, pair_points
from simplug import GroupSimilarityDataLoader, PairsSimilarityDataLoader, Quaterion, SimilarityModel, TrainableModel
from simplug.training.cache.config import CacheConfig, CacheType
from simplug.components.encoder import Encoder
from simplug.errors import ComponentNotFoundError, ConfigError
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.plugins.heads.skip_connection import SkipConnectionHead
from simplug.plugins.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss
from simplug.plugins.losses.triplet import TripletLoss
from simplug.registry import get_registry

FIT = dict(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


class CountingEncoder(TorchModuleEncoder):
    """Counts forward calls and collated objects, and can ask for a fill order."""

    def __init__(self, *args, fill_order=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.seen: list[torch.Tensor] = []
        self.fill_order = fill_order

    def forward(self, batch):
        self.calls += 1
        self.seen.append(batch.detach().clone())
        return super().forward(batch)

    def cache_fill_order(self, objects):
        return None if self.fill_order is None else self.fill_order(objects)


def make_encoder(dim=12, out=16, trainable=False, **kwargs):
    torch.manual_seed(0)
    return CountingEncoder(nn.Sequential(nn.Linear(dim, out), nn.Tanh()), input_size=dim, trainable=trainable, **kwargs)


class Model(TrainableModel):
    def __init__(self, cache=None, encoders=None, loss=None):
        self.parts = [cache, encoders, loss]  # a list: torch refuses modules before __init__
        super().__init__()

    def configure_encoders(self):
        return self.parts[1] if self.parts[1] is not None else make_encoder()

    def configure_head(self, input_embedding_size):
        torch.manual_seed(1)
        return SkipConnectionHead(input_embedding_size, n_layers=1)

    def configure_loss(self):
        return self.parts[2] or TripletLoss(mining="hard")

    def configure_caches(self):
        return self.parts[0]

    def configure_optimizers(self):
        return torch.optim.SGD(self.trainable_parameters(), lr=0.1)


def head_state(model):
    return {k: v.clone() for k, v in model.model.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


# ---------------------------------------------------------------------------- config errors
def test_caching_a_trainable_encoder_is_a_clear_error():
    model = Model(cache=CacheConfig(mapping={"default": CacheType.CPU}), encoders=make_encoder(trainable=True))
    with pytest.raises(ConfigError, match="'default' is trainable.*freeze it"):
        Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(group_points(), batch_size=16), **FIT)
    only_trainable = Model(cache=CacheConfig(CacheType.CPU), encoders=make_encoder(trainable=True))
    with pytest.raises(ConfigError, match="every encoder is trainable"):
        Quaterion.fit(only_trainable, train_dataloader=GroupSimilarityDataLoader(group_points(), batch_size=16), **FIT)


def test_bad_cache_settings_name_the_fix():
    with pytest.raises(ConfigError, match="batch_size"):
        CacheConfig(batch_size=0)
    with pytest.raises(ConfigError, match="key_extractors"):
        CacheConfig(key_extractors={"default": "not callable"})
    model = Model(cache=CacheConfig(mapping={"txt": "cpu"}))
    with pytest.raises(ConfigError, match=r"\['txt'\].*encoders are: default"):
        Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(group_points(), batch_size=16), **FIT)
    model = Model(cache=CacheConfig(cache_type="dsik"))
    with pytest.raises(ComponentNotFoundError, match="disk"):
        Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(group_points(), batch_size=16), **FIT)


def test_backends_are_registered_plugins():
    names = get_registry().names("cache_backends")
    assert {"memory", "device", "disk"} <= set(names)


@pytest.mark.parametrize("name", ["memory", "device", "disk"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_backend_stores_rows_where_written(name, dtype, tmp_path):
    cls = get_registry().resolve("cache_backends", name)
    backend = cls(10, 4, dtype=dtype, path=str(tmp_path / "rows") if name == "disk" else None)
    values = torch.randn(10, 4)
    backend.write(torch.tensor([3, 1, 0]), values[:3])
    backend.write(torch.arange(3, 10), values[3:])
    expected = torch.empty(10, 4)
    expected[torch.tensor([3, 1, 0])] = values[:3]
    expected[3:] = values[3:]
    got = backend.rows(torch.tensor([0, 9, 3]))
    assert got.dtype == dtype
    assert torch.allclose(got.float(), expected[[0, 9, 3]].to(dtype).float())
    assert backend.payload_bytes == 10 * 4 * torch.empty(0, dtype=dtype).element_size()


def test_disk_backend_keeps_its_rows_in_the_file_not_in_memory(tmp_path):
    import numpy as np

    from simplug.plugins.cache.disk import DiskCache

    path = str(tmp_path / "rows")
    backend = DiskCache(1000, 8, path=path)
    values = torch.randn(1000, 8)
    backend.write(torch.arange(1000), values)
    backend.flush()
    # the storage is a mapping of the file (pages come in on demand), not a copy in RAM
    assert backend.storage.untyped_storage().filename == path
    on_disk = np.fromfile(path, dtype=np.float32).reshape(1000, 8)
    assert np.array_equal(on_disk, values.numpy())
    # a row written through the file is seen through the mapping
    reopened = DiskCache(1000, 8, path=path)
    assert torch.equal(reopened.rows(torch.tensor([5, 999])), values[[5, 999]])


# ---------------------------------------------------------------------------- fill and fast path
@pytest.mark.parametrize("cache_type", [CacheType.AUTO, CacheType.CPU, CacheType.GPU, "disk"])
def test_cached_training_equals_uncached_training_and_skips_the_encoder(cache_type):
    train, val = group_points(per_group=10), group_points(per_group=4, seed=3)
    loaders = lambda: dict(  # noqa: E731
        train_dataloader=GroupSimilarityDataLoader(train, batch_size=16),
        val_dataloader=GroupSimilarityDataLoader(val, batch_size=8),
    )
    plain = Model()
    Quaterion.fit(plain, **loaders(), **FIT)
    cached = Model(cache=CacheConfig(cache_type, batch_size=7))
    trainer = Quaterion.fit(cached, **loaders(), **FIT)
    assert_same_state(head_state(cached), head_state(plain))
    assert "loss_validation" in trainer.callback_metrics and "loss_train" in trainer.callback_metrics
    encoder = cached.model.encoders["default"]
    # the encoder ran only for the fill, one pass over the 84 objects in batches of 7
    assert encoder.calls == -(-(len(train) + len(val)) // 7)
    backend = cached.cache_state.backends["default"]
    assert len(backend) == len(train) + len(val)
    direct = encoder.module(torch.stack([s.obj for s in train + val]))
    assert torch.allclose(backend.rows(torch.arange(len(backend))).float(), direct, atol=1e-6)


def test_fill_encodes_in_the_encoders_order_and_stores_rows_in_place():
    by_norm = lambda objects: sorted(range(len(objects)), key=lambda i: float(objects[i].norm()))  # noqa: E731
    encoder = make_encoder(fill_order=by_norm)
    model = Model(cache=CacheConfig(batch_size=5), encoders=encoder)
    train = group_points(per_group=5)
    Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(train, batch_size=10), **FIT)
    norms = torch.cat(encoder.seen).norm(dim=1)
    assert torch.equal(norms, norms.sort().values)  # encoded in ascending norm order
    assert [len(b) for b in encoder.seen] == [5] * 6
    rows = model.cache_state.backends["default"].rows(torch.arange(len(train)))
    assert torch.allclose(rows, encoder.module(torch.stack([s.obj for s in train])), atol=1e-6)


def test_a_fill_order_that_is_not_a_permutation_is_refused():
    model = Model(cache=CacheConfig(), encoders=make_encoder(fill_order=lambda objs: [0] * len(objs)))
    with pytest.raises(ConfigError, match="cache_fill_order"):
        Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(group_points(), batch_size=16), **FIT)


def test_an_epoch_touches_no_sample_and_no_collate():
    class Watched(list):
        reads = 0

        def __getitem__(self, i):
            Watched.reads += 1
            return super().__getitem__(i)

    train = Watched(group_points(per_group=8))
    model = Model(cache=CacheConfig())
    calls = {"collate": 0}
    original = model.model.encoders["default"].get_collate_fn

    def counting_collate():
        fn = original()

        def collate(batch):
            calls["collate"] += 1
            return fn(batch)

        return collate

    model.model.encoders["default"].get_collate_fn = counting_collate
    loader = GroupSimilarityDataLoader(train, batch_size=16, shuffle=True)
    Quaterion.fit(model, train_dataloader=loader, **{**FIT, "max_epochs": 1})
    reads_after_first = Watched.reads
    collates_after_first = calls["collate"]
    Quaterion.fit(model, train_dataloader=loader, **{**FIT, "max_epochs": 4})  # refills once, then 4 epochs
    # only the set-up pass reads samples (one pass + the loader's check of item 0), never an epoch
    assert Watched.reads - reads_after_first == len(train)
    assert calls["collate"] - collates_after_first == -(-len(train) // 32)


def test_pairs_with_key_extractors_share_rows_and_train_like_uncached():
    base = pair_points(n_pairs=24)
    # every obj_b repeats obj_a of another pair: a key per object content dedupes them
    pairs = [type(p)(p.obj_a, base[(i + 1) % len(base)].obj_a, p.score, p.subgroup) for i, p in enumerate(base)]
    key = lambda obj: tuple(round(float(x), 6) for x in obj)  # noqa: E731
    loaders = lambda: dict(train_dataloader=PairsSimilarityDataLoader(pairs, batch_size=8))  # noqa: E731
    plain = Model(loss=MultipleNegativesRankingLoss())
    Quaterion.fit(plain, **loaders(), **FIT)
    cached = Model(cache=CacheConfig(key_extractors=key), loss=MultipleNegativesRankingLoss())
    Quaterion.fit(cached, **loaders(), **FIT)
    assert len(cached.cache_state.backends["default"]) == len(pairs)  # 48 objects, 24 unique
    assert_same_state(head_state(cached), head_state(plain))


def test_a_custom_batch_sampler_is_followed():
    batches = [[5, 1, 9, 3], [0, 2, 4, 6, 8], [7, 10, 11]]

    class FixedBatches:
        def __iter__(self):
            return iter(batches)

        def __len__(self):
            return len(batches)

    seen = []

    class Recording(Model):
        def training_step(self, batch, batch_idx):
            seen.append(batch["indices"].tolist())
            return super().training_step(batch, batch_idx)

    train = group_points(n_groups=3, per_group=4)
    model = Recording(cache=CacheConfig())
    Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(train, batch_sampler=FixedBatches()), **{**FIT, "max_epochs": 1})
    assert seen == batches


def test_partially_cached_model_trains_the_uncached_encoder():
    def encoders():
        frozen = make_encoder()
        torch.manual_seed(5)
        trainable = CountingEncoder(nn.Linear(12, 8), input_size=12, trainable=True)
        return {"frozen": frozen, "tuned": trainable}

    train = group_points(per_group=8)
    plain = Model(encoders=encoders())
    Quaterion.fit(plain, train_dataloader=GroupSimilarityDataLoader(train, batch_size=16), **FIT)
    cached = Model(cache=CacheConfig(), encoders=encoders())
    before = cached.model.encoders["tuned"].module.weight.clone()
    Quaterion.fit(cached, train_dataloader=GroupSimilarityDataLoader(train, batch_size=16), **FIT)
    assert list(cached.cache_state.backends) == ["frozen"]
    assert not torch.equal(before, cached.model.encoders["tuned"].module.weight)
    assert cached.model.encoders["frozen"].calls == -(-len(train) // 32)  # the fill only
    assert cached.model.encoders["tuned"].calls == 2 * -(-len(train) // 16)
    assert_same_state(head_state(cached), head_state(plain))


def test_checkpoints_and_save_servable_after_cached_training(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    model = Model(cache=CacheConfig(half_precision=True))
    train = group_points(per_group=8)
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(train, batch_size=16),
                  **{**FIT, "enable_checkpointing": True, "callbacks": [checkpoint]})
    saved = torch.load(checkpoint.last_model_path, weights_only=False)
    assert not any("cache" in key for key in saved["state_dict"])
    head_keys = [k for k in saved["state_dict"] if k.startswith("_model.head.")]
    assert head_keys
    for key in head_keys:
        assert torch.equal(saved["state_dict"][key], model.state_dict()[key])

    model.save_servable(str(tmp_path / "servable"))
    loaded = SimilarityModel.load(str(tmp_path / "servable"), trust_local_code=True)
    objects = [s.obj for s in train[:10]]
    # the real encoder was saved: raw objects go in, the trained model's embeddings come out
    assert isinstance(loaded.encoders["default"], Encoder)
    assert torch.allclose(torch.as_tensor(loaded.encode(objects)), torch.as_tensor(model.model.encode(objects)), atol=1e-5)
    assert not any(name.endswith(".rows") for name in os.listdir(tmp_path / "servable"))


def test_config_models_take_a_cache_setting(tmp_path):
    model = TrainableModel.from_config({
        "encoder": make_encoder(),
        "head": "skip_connection",
        "loss": {"name": "triplet"},
        "cache": {"cache_type": "disk", "save_dir": str(tmp_path)},
    })
    Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(group_points(per_group=5), batch_size=10), **FIT)
    assert sorted(os.listdir(tmp_path)) == [".default.rows.lock", "default.json", "default.rows"]
    with pytest.raises(ConfigError, match="unknown cache setting"):
        TrainableModel.from_config({"encoder": make_encoder(), "loss": "triplet", "cache": {"save_dri": "x"}}).configure_caches()


def test_training_loss_is_logged_on_logger_steps_with_the_epoch_mean(tmp_path):
    import csv

    from pytorch_lightning.loggers import CSVLogger

    model = Model(cache=CacheConfig())
    train = group_points(per_group=8)  # 48 samples: batches of 16, 16, 16
    Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(train, batch_size=16),
                  **{**FIT, "logger": CSVLogger(str(tmp_path), name="run"), "log_every_n_steps": 1})
    rows = list(csv.DictReader(open(next(tmp_path.glob("run/*/metrics.csv")))))
    steps = [(int(r["epoch"]), float(r["loss_train_step"])) for r in rows if r.get("loss_train_step")]
    epochs = {int(r["epoch"]): float(r["loss_train_epoch"]) for r in rows if r.get("loss_train_epoch")}
    assert len(steps) == 6 and sorted(epochs) == [0, 1]
    for epoch, value in epochs.items():
        step_losses = [loss for e, loss in steps if e == epoch]
        assert value == pytest.approx(sum(step_losses) / len(step_losses), rel=1e-5)


@pytest.mark.parametrize("clip_algorithm", ["value", "norm"])
def test_trainer_gradient_clipping_still_clips(clip_algorithm):
    """TrainableModel skips Lightning's clipping hook when no clip value is set; with one, the
    step must still be clipped: SGD at lr 1 moves no weight further than the clip allows."""
    train = GroupSimilarityDataLoader(group_points(per_group=8), batch_size=48)
    moved = {}
    for clip in (None, 1e-6):
        model = Model(cache=CacheConfig())
        model.configure_optimizers = lambda m=model: torch.optim.SGD(m.trainable_parameters(), lr=1.0)
        before = head_state(model)
        Quaterion.fit(model, train_dataloader=train, **{**FIT, "max_epochs": 1},
                      gradient_clip_val=clip, gradient_clip_algorithm=clip_algorithm)
        after = head_state(model)
        moved[clip] = torch.cat([(after[k] - before[k]).flatten() for k in before])
    assert moved[None].abs().max() > 1e-4  # unclipped, one step moves some weight 100x further
    if clip_algorithm == "value":
        assert moved[1e-6].abs().max() <= 1e-6 * (1 + 1e-3)
    else:
        assert moved[1e-6].norm() <= 1e-6 * (1 + 1e-2)


def test_fit_uses_a_no_op_profiler_unless_one_is_given():
    from pytorch_lightning.profilers import SimpleProfiler

    from simplug.training.lightning_speed import NoProfiler

    model = Model(cache=CacheConfig())
    trainer = Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(group_points(per_group=4), batch_size=8), **FIT)
    assert isinstance(trainer.profiler, NoProfiler)
    with trainer.profiler.profile("anything") as value:  # a usable context, reentrant
        with trainer.profiler.profile("nested"):
            assert value is None
    trainer = Quaterion.fit(Model(cache=CacheConfig()), profiler=SimpleProfiler(),
                            train_dataloader=GroupSimilarityDataLoader(group_points(per_group=4), batch_size=8), **FIT)
    assert isinstance(trainer.profiler, SimpleProfiler)
    assert "run_training_epoch" in trainer.profiler.recorded_durations


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("ordered", [False, True])
def test_fill_batches_split_every_position_once_across_processes(world, ordered):
    from simplug.training.cache.fill import _ShareOfBatches

    n, batch_size = 23, 4
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)) if ordered else None
    expected = order if ordered else torch.arange(n)
    shares = [_ShareOfBatches(order, n, batch_size, rank, world) for rank in range(world)]
    batches = {rank: list(share.tensors()) for rank, share in enumerate(shares)}
    for rank, share in enumerate(shares):
        assert len(share) == len(batches[rank])
        assert [b.tolist() for b in batches[rank]] == list(share)  # the loader's lists match the tensors
    # batch i of the order goes to rank i % world, and together they are the whole order
    for i, start in enumerate(range(0, n, batch_size)):
        assert torch.equal(batches[i % world][i // world], expected[start:start + batch_size])
    assert sum(len(b) for bs in batches.values() for b in bs) == n
