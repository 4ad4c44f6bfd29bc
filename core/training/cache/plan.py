"""The cache plan: which object of which data source goes to which row of a cache table."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from simplug.errors import ConfigError, DataError
from simplug.training.cache.config import CacheConfig
from simplug.training.cache.files import (
    update_content_digest,
)

log = logging.getLogger("simplug.training.cache.files")

SOURCE_KEY = "cache_source"


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
    # the data set whose sample positions the rows follow (a reference, for readers that must
    # be sure their positions mean the same samples)
    dataset: Any = None

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


