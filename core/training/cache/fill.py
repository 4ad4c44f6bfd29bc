"""The cache fill: one pass of each frozen encoder over its unique objects, into a backend,
loaded from or persisted to verified cache files."""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from typing import Any, Iterator, Mapping, Sequence

import torch
from simplug.components.cache_backend import CacheBackend
from simplug.data.distributed import Collectives
from simplug.errors import ConfigError, DataError
from simplug.files import (
    TMP_MARK,
    remove_stale_siblings,
    sha256_file,
    unique_sibling,
    write_json_atomic,
)
from simplug.model.similarity_model import move_to_device
from simplug.registry import get_registry
from simplug.training.cache.config import CacheConfig, backend_name
from simplug.training.cache.files import (
    NO_CACHE_FILE,
    cache_lock,
    cache_paths,
    encoder_fingerprint,
    expected_meta,
    verify_cache_file,
)
from simplug.training.cache.plan import EncoderPlan, RowMap, SourcePlan
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger("simplug.training.cache.files")

SOURCE_KEY = "cache_source"


# ---------------------------------------------------------------------------- cache state
class _EntryLock:
    """The cache entry's lock, held by the first process (the one that checks and writes the
    files); the others follow it through the fill's barriers."""

    def __init__(self, rows_path: str, dist: Collectives):
        self.lock = cache_lock(rows_path) if dist.rank == 0 else None

    def __enter__(self) -> "_EntryLock":
        if self.lock is not None:
            self.lock.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.lock is not None:
            self.lock.release()


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

    def add_source(self, name: str, loader: Any) -> SourcePlan:
        dataset = loader.dataset
        samples = [dataset[i] for i in range(len(dataset))]
        records, targets = loader.pre_collate(samples)  # also checks every sample's type
        n = len(samples)
        per_sample = len(records) // n if n else 1
        if per_sample * n != len(records):
            raise DataError(f"{type(loader).__name__} made {len(records)} records from {n} samples; expected a multiple")
        plan = SourcePlan(name, n, per_sample, {k: v for k, v in targets.items() if isinstance(v, torch.Tensor)},
                          dataset=dataset)
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
        dist = Collectives()
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
                  progress: bool, dist: Collectives) -> CacheBackend:
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
        # From the check to the last write this run owns the entry: another run sharing the
        # cache_dir waits, then finds this run's complete cache (reused or rebuilt for its data).
        with _EntryLock(rows_path, dist):
            reason = dist.broadcast(verify_cache_file(rows_path, meta_path, expected) if dist.rank == 0 else None)
            if reason is None:
                log.info("cache of encoder %r: reusing %s", key, rows_path)
                backend = cls(num_rows, dim, dtype, device, path=rows_path if cls.file_backed else None)
                backend.load_file(rows_path)
                dist.barrier()  # every process holds the verified rows before another run may replace them
                self.outcomes[key] = f"reused {rows_path} ({num_rows} rows)"
                return backend
            tmp = None
            if dist.rank == 0:
                if reason != NO_CACHE_FILE:
                    warnings.warn(f"rebuilding the cache of encoder {key!r} in {save_dir}: {reason}", stacklevel=2)
                if os.path.exists(meta_path):
                    os.remove(meta_path)  # a rebuild killed midway leaves no description to trust
                for leftover in (rows_path, meta_path):  # temporary files of killed runs (we hold the lock)
                    remove_stale_siblings(leftover)
                tmp = unique_sibling(rows_path, TMP_MARK)  # this run's own file: no other run writes it
            tmp = dist.broadcast(tmp)
            build_path = tmp if cls.file_backed else None
            backend = cls(num_rows, dim, dtype, device, path=build_path) if dist.rank == 0 or not cls.file_backed else None
            dist.barrier()  # the first process has created the file the others map
            if backend is None:
                backend = cls(num_rows, dim, dtype, device, path=build_path)
            self._encode_into(backend, key, plan, encoder, device, progress, dist)
            if dist.rank == 0:
                backend.save_file(tmp)
                # the checksum of the bytes this run wrote, taken from its private file before it
                # is published (never from whatever file is at rows_path afterwards)
                digest = sha256_file(tmp)
                os.replace(tmp, rows_path)
                write_json_atomic(meta_path, {**expected, "sha256": digest, "encoder": encoder_fingerprint(encoder, dtype)})
            dist.barrier()
        if cls.file_backed:
            backend.path = rows_path  # the mapping follows the renamed file
        self.outcomes[key] = (f"built {rows_path} ({num_rows} rows)" if reason == NO_CACHE_FILE
                              else f"rebuilt {rows_path} ({num_rows} rows): {reason}")
        return backend

    def _encode_into(self, backend: CacheBackend, key: str, plan: EncoderPlan, encoder: Any,
                     device: torch.device, progress: bool, dist: Collectives) -> None:
        """Encode this process's share of the objects (every ``world``-th batch) into their rows,
        then combine the shares."""
        from tqdm.auto import tqdm

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


