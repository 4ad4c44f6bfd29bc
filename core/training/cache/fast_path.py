"""Training with cached encoders: the plan (which object goes to which row), the fill, and the
index loaders of the fast path.

When every encoder is cached, a batch is just a LongTensor of sample positions: the loader
draws a whole epoch's order as one tensor and splits it, and the model gathers cached rows and
targets with ``index_select``. No sample object is touched and no encoder collate runs after
the fill. When some encoders are not cached (a trainable one beside a frozen one), the batch
also carries those encoders' collated inputs, built from the samples at the same positions.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Mapping

import torch
from simplug.errors import DataError
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
)

log = logging.getLogger("simplug.training.cache.files")

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


