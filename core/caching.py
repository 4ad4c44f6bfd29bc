"""Training with cached encoders: the plan (which object goes to which row), the fill, and the
index loaders of the fast path.

When every encoder is cached, a batch is just a LongTensor of sample positions: the loader
draws a whole epoch's order as one tensor and splits it, and the model gathers cached rows and
targets with ``index_select``. No sample object is touched and no encoder collate runs after
the fill. When some encoders are not cached (a trainable one beside a frozen one), the batch
also carries those encoders' collated inputs, built from the samples at the same positions.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from simplug.cache import (
    NO_CACHE_FILE,
    CacheBackend,
    CacheConfig,
    backend_name,
    cache_paths,
    encoder_fingerprint,
    expected_meta,
    file_sha256,
    update_content_digest,
    verify_cache_file,
    write_meta,
)
from simplug.errors import ConfigError, DataError

log = logging.getLogger("simplug.cache")

SOURCE_KEY = "cache_source"


# ---------------------------------------------------------------------------- index loaders
class IndexDataset(Dataset):
    """Positions ``0..n-1``; a batch of positions comes back as given (a tensor stays a tensor)."""

    def __init__(self, length: int):
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        return index

    def __getitems__(self, indices: Any) -> Any:
        return indices


class TensorBatchSampler:
    """Batches of positions as LongTensors: each epoch's order is drawn at once (``randperm``
    for a shuffling sampler) and split, so no Python runs per sample. Any other sampler (e.g. a
    ``DistributedSampler`` that Lightning puts in under DDP) is read once per epoch.

    The ``(sampler, batch_size, drop_last)`` signature lets Lightning rebuild it around its own
    sampler."""

    def __init__(self, sampler: Any, batch_size: int, drop_last: bool = False):
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)

    def _order(self) -> torch.Tensor:
        sampler = self.sampler
        if isinstance(sampler, SequentialSampler):
            return torch.arange(len(sampler.data_source))
        if isinstance(sampler, RandomSampler) and not sampler.replacement and sampler._num_samples is None:
            return torch.randperm(len(sampler.data_source), generator=sampler.generator)
        return torch.as_tensor(list(sampler), dtype=torch.long)

    def __iter__(self) -> Iterator[torch.Tensor]:
        batches = self._order().split(self.batch_size)
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches = batches[:-1]
        return iter(batches)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class CachedBatchCollate:
    """Turns a batch of positions into ``{"cache_source": name, "indices": LongTensor}``, plus
    ``"features"`` (collated raw objects) for the encoders that are not cached."""

    def __init__(self, source: str, dataset: Any = None, pre_collate: Callable | None = None,
                 uncached_collates: Mapping[str, Callable] | None = None):
        self.source = source
        self.dataset = dataset
        self.pre_collate = pre_collate
        self.uncached_collates = dict(uncached_collates or {})

    def __call__(self, indices: Any) -> dict[str, Any]:
        if not isinstance(indices, torch.Tensor):
            indices = torch.as_tensor(indices, dtype=torch.long)
        batch: dict[str, Any] = {SOURCE_KEY: self.source, "indices": indices}
        if self.uncached_collates:
            records, _ = self.pre_collate([self.dataset[i] for i in indices.tolist()])
            batch["features"] = {key: fn(records) for key, fn in self.uncached_collates.items()}
        return batch


def is_cached_batch(batch: Any) -> bool:
    return isinstance(batch, dict) and SOURCE_KEY in batch


def index_loader(loader: DataLoader, source: str, collate: CachedBatchCollate, fully_cached: bool) -> DataLoader:
    """A plain ``DataLoader`` over positions that yields the batches ``loader`` would: its own
    batch sampler when it has a custom one, else the same sampler and batch size, drawn as tensors."""
    if loader.batch_size is None and loader.batch_sampler is None:
        raise DataError(f"the {source} loader has no batch size or batch sampler; give it batch_size=...")
    custom = type(loader.batch_sampler) is not BatchSampler
    batch_sampler = loader.batch_sampler if custom else TensorBatchSampler(loader.sampler, loader.batch_size, loader.drop_last)
    # positions are cheap to batch: worker processes would only add inter-process copies
    workers = 0 if fully_cached else loader.num_workers
    return DataLoader(
        IndexDataset(len(loader.dataset)),
        batch_sampler=batch_sampler,
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0 and loader.persistent_workers,
    )


# ---------------------------------------------------------------------------- the plan
class RowMap:
    """Record positions of one source -> cache rows. Stored as an offset when the rows are a
    contiguous range (the default keys), else as a table."""

    def __init__(self, rows: torch.Tensor):
        n = len(rows)
        offset = int(rows[0]) if n else 0
        self.offset = offset if n and torch.equal(rows, torch.arange(offset, offset + n)) else None
        self.table = None if self.offset is not None else rows

    def to(self, device: torch.device) -> "RowMap":
        if self.table is not None:
            self.table = self.table.to(device)
        return self

    def lookup(self, positions: torch.Tensor) -> torch.Tensor:
        if self.table is None:
            return positions + self.offset if self.offset else positions
        return self.table.index_select(0, positions.to(self.table.device))


@dataclass
class SourcePlan:
    """One loader's data: its targets for all samples, and where its records' rows are."""

    name: str
    num_samples: int
    records_per_sample: int  # 1 for groups, 2 for pairs (all obj_a, then all obj_b)
    targets: dict[str, torch.Tensor]
    row_maps: dict[str, RowMap] = field(default_factory=dict)
    # (storage, row offset) when one cached encoder is all the model has and its rows are a
    # range on the training device: the hot path then needs no per-encoder bookkeeping
    single_rows: tuple[torch.Tensor, int] | None = None
    _pairs_by_size: dict[int, torch.Tensor] = field(default_factory=dict)

    def record_positions(self, indices: torch.Tensor) -> torch.Tensor:
        if self.records_per_sample == 1:
            return indices
        return torch.cat([indices, indices + self.num_samples])

    def batch_targets(self, indices: torch.Tensor, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, value in self.targets.items():
            if name == "pairs":
                n = len(indices)
                pairs = self._pairs_by_size.get(n)
                if pairs is None or pairs.device != indices.device:
                    pairs = torch.stack([torch.arange(n), torch.arange(n, 2 * n)], dim=1).to(indices.device)
                    self._pairs_by_size[n] = pairs
                out[name] = pairs
            elif len(value) == self.num_samples:
                out[name] = value.index_select(0, indices)
            else:
                out[name] = value.index_select(0, positions)
        return out

    def to(self, device: torch.device) -> None:
        self.targets = {k: v.to(device) for k, v in self.targets.items()}
        self._pairs_by_size.clear()


@dataclass
class EncoderPlan:
    """The unique objects of one cached encoder, in row order, and their keys."""

    name: str
    cache_type: Any
    key_extractor: Callable | None
    row_of_key: dict[Any, int] = field(default_factory=dict)
    objects: list[Any] = field(default_factory=list)

    def add_records(self, source: str, records: Sequence[Any]) -> torch.Tensor:
        rows = torch.empty(len(records), dtype=torch.long)
        extract = self.key_extractor
        for i, record in enumerate(records):
            if extract is None:
                key: Any = (source, i)
            else:
                try:
                    key = extract(record)
                    hash(key)
                except Exception as exc:  # noqa: BLE001 - any failure is the user's extractor
                    raise DataError(
                        f"the cache key extractor of encoder {self.name!r} failed on record {i} of the "
                        f"{source} data ({type(exc).__name__}: {exc}); it must return a hashable key"
                    ) from exc
            row = self.row_of_key.get(key)
            if row is None:
                row = self.row_of_key[key] = len(self.objects)
                self.objects.append(record)
            rows[i] = row
        return rows

    def data_digest(self) -> str:
        """The data part of the fingerprint: the keys in row order, and for position keys the
        objects' content (positions alone would not notice a changed data set)."""
        h = hashlib.sha256()
        h.update(f"rows={len(self.objects)};".encode())
        for key, row in self.row_of_key.items():
            h.update(repr(key).encode())
            if self.key_extractor is None:
                update_content_digest(h, self.objects[row])
        return h.hexdigest()


def resolve_cached_encoders(config: CacheConfig, encoders: Mapping[str, Any]) -> dict[str, Any]:
    """``{encoder_name: cache_type}`` of the encoders to cache; errors name the fix."""
    names = ", ".join(sorted(encoders))
    if config.mapping is not None:
        unknown = sorted(set(config.mapping) - set(encoders))
        if unknown:
            raise ConfigError(f"CacheConfig.mapping names encoder(s) {unknown} that the model does not have; its encoders are: {names}")
        chosen = dict(config.mapping)
    else:
        chosen = {key: config.cache_type for key, enc in encoders.items() if not enc.trainable}
        if not chosen and str(getattr(config.cache_type, "value", config.cache_type)) != "auto":
            raise ConfigError(
                "CacheConfig asks for a cache but every encoder is trainable: a trainable encoder's "
                "embeddings change every step, so they cannot be cached; freeze an encoder "
                "(trainable=False) or return None from configure_caches"
            )
    for key in chosen:
        if encoders[key].trainable:
            raise ConfigError(
                f"encoder {key!r} is trainable, so it cannot be cached (its embeddings change every "
                f"step); freeze it (trainable=False) or leave it out of CacheConfig.mapping"
            )
    if isinstance(config.key_extractors, Mapping):
        unknown = sorted(set(config.key_extractors) - set(encoders))
        if unknown:
            raise ConfigError(f"CacheConfig.key_extractors names encoder(s) {unknown} that the model does not have; its encoders are: {names}")
    return chosen


# ---------------------------------------------------------------------------- cache state
class _Dist:
    """The few collectives the fill needs; a no-op on one process."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1

    def barrier(self) -> None:
        if self.active:
            self.dist.barrier()

    def broadcast(self, value: Any) -> Any:
        if not self.active:
            return value
        box = [value]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum_(self, tensor: torch.Tensor) -> None:
        if self.active and tensor.numel():
            self.dist.all_reduce(tensor, op=self.dist.ReduceOp.SUM)


class CacheState:
    """Everything the cache holds for one model: the plans of its loaders and the backends."""

    def __init__(self, config: CacheConfig, cached: Mapping[str, Any]):
        self.config = config
        self.encoder_plans = {key: EncoderPlan(key, cache_type, config.key_extractor(key)) for key, cache_type in cached.items()}
        self.sources: dict[str, SourcePlan] = {}
        self.backends: dict[str, CacheBackend] = {}
        self.filled = False
        # what the fill did for each encoder, in words ("built", "reused ...", "rebuilt ...: reason")
        self.outcomes: dict[str, str] = {}

    @property
    def cached_names(self) -> list[str]:
        return list(self.encoder_plans)

    def add_source(self, name: str, loader: Any) -> SourcePlan:
        dataset = loader.dataset
        samples = [dataset[i] for i in range(len(dataset))]
        records, targets = loader.pre_collate(samples)  # also checks every sample's type
        n = len(samples)
        per_sample = len(records) // n if n else 1
        if per_sample * n != len(records):
            raise DataError(f"{type(loader).__name__} made {len(records)} records from {n} samples; expected a multiple")
        plan = SourcePlan(name, n, per_sample, {k: v for k, v in targets.items() if isinstance(v, torch.Tensor)})
        for key, encoder_plan in self.encoder_plans.items():
            plan.row_maps[key] = RowMap(encoder_plan.add_records(name, records))
        self.sources[name] = plan
        return plan

    def to(self, device: torch.device) -> None:
        for plan in self.sources.values():
            plan.to(device)

    def gather(self, key: str, source: SourcePlan, positions: torch.Tensor) -> torch.Tensor:
        backend = self.backends[key]
        return backend.rows(source.row_maps[key].lookup(positions.to(backend.storage.device)))

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
        self.backends.clear()

    # ------------------------------------------------------------------ the fill
    def fill(self, encoders: Mapping[str, Any], device: torch.device, progress: bool) -> None:
        from simplug.registry import get_registry

        dist = _Dist()
        registry = get_registry()
        for key, plan in self.encoder_plans.items():
            encoder = encoders[key]
            cls = registry.resolve("cache_backends", backend_name(plan.cache_type, device))
            if not (isinstance(cls, type) and issubclass(cls, CacheBackend)):
                raise ConfigError(f"cache backend {backend_name(plan.cache_type, device)!r} is not a simplug CacheBackend")
            self.backends[key] = self._fill_one(key, plan, encoder, cls, device, progress, dist)
            for source in self.sources.values():
                source.row_maps[key].to(self.backends[key].storage.device)
            plan.objects = []  # the objects are only needed to encode them
        self.to(device)
        only = next(iter(self.backends.values())) if len(self.backends) == 1 == len(encoders) else None
        for source in self.sources.values():
            row_map = next(iter(source.row_maps.values())) if only is not None else None
            usable = row_map is not None and row_map.offset is not None and only.storage.device == device
            source.single_rows = (only.storage, row_map.offset) if usable else None
        self.filled = True

    def _fill_one(self, key: str, plan: EncoderPlan, encoder: Any, cls: type, device: torch.device,
                  progress: bool, dist: _Dist) -> CacheBackend:
        config = self.config
        num_rows, dim, dtype = len(plan.objects), int(encoder.embedding_size), config.dtype
        save_dir = os.fspath(config.save_dir) if config.save_dir is not None else None
        if save_dir is None:
            path = None
            if cls.file_backed and dist.active:  # every process maps the same temporary file
                backend = cls(num_rows, dim, dtype, device) if dist.rank == 0 else None
                path = dist.broadcast(backend.path if backend is not None else None)
                if backend is None:
                    backend = cls(num_rows, dim, dtype, device, path=path)
            else:
                backend = cls(num_rows, dim, dtype, device)
            self._encode_into(backend, key, plan, encoder, device, progress, dist)
            self.outcomes[key] = f"built ({num_rows} rows, not persisted)"
            return backend

        os.makedirs(save_dir, exist_ok=True)
        rows_path, meta_path = cache_paths(save_dir, key)
        fingerprint = hashlib.sha256(
            repr((sorted(encoder_fingerprint(encoder, dtype).items()), plan.data_digest())).encode()
        ).hexdigest()
        expected = expected_meta(fingerprint, num_rows, dim, dtype)
        reason = dist.broadcast(verify_cache_file(rows_path, meta_path, expected) if dist.rank == 0 else None)
        if reason is None:
            log.info("cache of encoder %r: reusing %s", key, rows_path)
            backend = cls(num_rows, dim, dtype, device, path=rows_path if cls.file_backed else None)
            backend.load_file(rows_path)
            self.outcomes[key] = f"reused {rows_path} ({num_rows} rows)"
            return backend
        if dist.rank == 0:
            if reason != NO_CACHE_FILE:
                warnings.warn(f"rebuilding the cache of encoder {key!r} in {save_dir}: {reason}", stacklevel=2)
            for stale in (meta_path, rows_path + ".tmp"):
                if os.path.exists(stale):
                    os.remove(stale)
        dist.barrier()
        tmp = rows_path + ".tmp"
        build_path = tmp if cls.file_backed else None
        backend = cls(num_rows, dim, dtype, device, path=build_path) if dist.rank == 0 or not cls.file_backed else None
        dist.barrier()  # the first process has created the file the others map
        if backend is None:
            backend = cls(num_rows, dim, dtype, device, path=build_path)
        self._encode_into(backend, key, plan, encoder, device, progress, dist)
        if dist.rank == 0:
            backend.save_file(tmp)
            os.replace(tmp, rows_path)
            write_meta(meta_path, {**expected, "sha256": file_sha256(rows_path), "encoder": encoder_fingerprint(encoder, dtype)})
        dist.barrier()
        if cls.file_backed:
            backend.path = rows_path  # the mapping follows the renamed file
        self.outcomes[key] = (f"built {rows_path} ({num_rows} rows)" if reason == NO_CACHE_FILE
                              else f"rebuilt {rows_path} ({num_rows} rows): {reason}")
        return backend

    def _encode_into(self, backend: CacheBackend, key: str, plan: EncoderPlan, encoder: Any,
                     device: torch.device, progress: bool, dist: _Dist) -> None:
        """Encode this process's share of the objects (every ``world``-th batch) into their rows,
        then combine the shares."""
        from tqdm.auto import tqdm

        from simplug.serving.model import move_to_device

        objects = plan.objects
        order = encoder.cache_fill_order(objects)
        order_t = None
        if order is not None:
            order_t = torch.as_tensor(list(order), dtype=torch.long)
            if len(order_t) != len(objects) or not torch.equal(order_t.sort().values, torch.arange(len(objects))):
                raise ConfigError(
                    f"{type(encoder).__name__}.cache_fill_order must return each position 0..{len(objects) - 1} "
                    "exactly once (or None)"
                )
        batches = _ShareOfBatches(order_t, len(objects), self.config.batch_size, dist.rank, dist.world)
        loader = DataLoader(
            _Objects(objects),
            batch_sampler=batches,
            collate_fn=encoder.get_collate_fn(),
            num_workers=self.config.num_workers or 0,
            # its own generator: a loader draws a seed at every epoch, and from the global RNG that
            # draw would make a run with a fresh fill shuffle differently from one reusing the cache
            generator=torch.Generator(),
        )
        was_training = encoder.training
        encoder.eval()
        bar = tqdm(total=len(objects), desc=f"caching {key}", unit="obj", disable=not progress or dist.rank != 0,
                   leave=False, dynamic_ncols=True)
        try:
            with torch.inference_mode():
                for positions, batch in zip(batches.tensors(), loader):
                    out = encoder(move_to_device(batch, device))
                    if out.dim() != 2 or out.shape != (len(positions), backend.embedding_size):
                        raise ConfigError(
                            f"encoder {key!r} ({type(encoder).__name__}) returned shape {tuple(out.shape)} for a batch "
                            f"of {len(positions)}, but declares embedding_size={backend.embedding_size}"
                        )
                    backend.write(positions, out)
                    bar.update(len(positions) * dist.world)
        finally:
            bar.close()
            encoder.train(was_training)
        if dist.active:
            if backend.file_backed:
                backend.flush()
                dist.barrier()
            else:
                dist.sum_(backend.storage)


class _ShareOfBatches:
    """This process's batches of the fill order (every ``world``-th one), each made when it is
    needed: a list of every position as Python ints, or even ``order.split()`` (one tensor object
    per batch, all at once), would cost more memory than a large cache's overhead budget.
    ``order=None`` is the identity order: its batches are ranges, and no order tensor is kept."""

    def __init__(self, order: torch.Tensor | None, num_positions: int, batch_size: int, rank: int, world: int):
        self.order, self.num_positions = order, num_positions
        self.batch_size, self.rank, self.world = batch_size, rank, world

    def tensors(self) -> Iterator[torch.Tensor]:
        step = self.batch_size * self.world
        for start in range(self.rank * self.batch_size, self.num_positions, step):
            stop = min(start + self.batch_size, self.num_positions)
            yield torch.arange(start, stop) if self.order is None else self.order[start:stop]

    def __iter__(self) -> Iterator[list[int]]:
        return (batch.tolist() for batch in self.tensors())

    def __len__(self) -> int:
        batches = -(-self.num_positions // self.batch_size)
        return len(range(self.rank, batches, self.world))


class _Objects(Dataset):
    def __init__(self, objects: Sequence[Any]):
        self.objects = objects

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, index: int) -> Any:
        return self.objects[index]


# ---------------------------------------------------------------------------- model side
class CachingMixin:
    """The cache half of ``TrainableModel``: kept apart so the training code reads on its own.

    ``simplug.fit`` calls ``setup_cache`` with the loaders; ``on_fit_start`` fills the caches
    (after Lightning has placed the model and started its processes); ``cached_embeddings``
    serves a batch from the caches.
    """

    _cache_state: CacheState | None = None

    def setup_cache(self, train_dataloader: Any, val_dataloader: Any = None) -> tuple[Any, Any]:
        """Replace the loaders by index loaders when ``configure_caches`` asks for a cache."""
        if self._cache_state is not None:
            self._cache_state.close()
            self._cache_state = None
        config = CacheConfig.from_spec(self.configure_caches())
        if config is None:
            return train_dataloader, val_dataloader
        encoders = self.model.encoders
        cached = resolve_cached_encoders(config, encoders)
        if not cached:
            return train_dataloader, val_dataloader
        from simplug.registry import get_registry

        for cache_type in cached.values():  # an unknown backend is reported now, not after minutes of fill
            get_registry().resolve("cache_backends", backend_name(cache_type, torch.device("cpu")))
        state = CacheState(config, cached)
        uncached = {k: e.get_collate_fn() for k, e in encoders.items() if k not in cached}
        loaders = []
        for name, loader in (("train", train_dataloader), ("validation", val_dataloader)):
            if loader is None:
                loaders.append(None)
                continue
            state.add_source(name, loader)
            collate = CachedBatchCollate(name, loader.dataset, loader.pre_collate, uncached)
            loaders.append(index_loader(loader, name, collate, fully_cached=not uncached))
        self._cache_state = state
        return loaders[0], loaders[1]

    @property
    def cache_state(self) -> CacheState | None:
        return self._cache_state

    def fill_caches(self) -> None:
        state = self._cache_state
        if state is None or state.filled:
            return
        trainer = getattr(self, "_trainer", None)
        progress = trainer is not None and trainer.progress_bar_callback is not None
        state.fill(self.model.encoders, self.device, progress)

    def on_fit_start(self) -> None:
        self.fill_caches()

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if not is_cached_batch(batch):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        # a cached batch is one index tensor (and maybe features): skip the generic walk over it
        moved = dict(batch)
        moved["indices"] = batch["indices"].to(device, non_blocking=True)
        if "features" in batch:
            moved["features"] = super().transfer_batch_to_device(batch["features"], device, dataloader_idx)
        return moved

    def cached_embeddings(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Encoder outputs (cached rows, or encoder output for uncached ones) and targets."""
        state = self._cache_state
        if state is None:
            raise DataError("a cached batch arrived but this model has no cache; train it with simplug's fit()")
        if not state.filled:  # on_fit_start was overridden without calling super().on_fit_start()
            self.fill_caches()
        source = state.sources[batch[SOURCE_KEY]]
        indices = batch["indices"]
        positions = source.record_positions(indices)
        if source.single_rows is not None:  # one cached encoder, rows in record order: two index_selects
            storage, offset = source.single_rows
            rows = storage.index_select(0, positions + offset if offset else positions)
            if rows.dtype != torch.float32:
                rows = rows.float()
            return rows, source.batch_targets(indices, positions)
        parts = []
        for key, encoder in self.model.encoders.items():
            if key in state.backends:
                parts.append(state.gather(key, source, positions).to(self.device, torch.float32, non_blocking=True))
            elif encoder.trainable:
                parts.append(encoder(batch["features"][key]))
            else:
                with torch.no_grad():
                    parts.append(encoder(batch["features"][key]))
        embeddings = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return embeddings, source.batch_targets(indices, positions)
