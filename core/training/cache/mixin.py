"""The model side of caching: set up, fill, and read cached embeddings during training."""
from __future__ import annotations

import logging
from typing import Any, Mapping

import torch
from simplug.errors import DataError
from simplug.registry import get_registry
from simplug.training.cache.config import CacheConfig, backend_name
from simplug.training.cache.fast_path import (
    CachedBatchCollate,
    index_loader,
    is_cached_batch,
)
from simplug.training.cache.fill import CacheState
from simplug.training.cache.plan import resolve_cached_encoders

log = logging.getLogger("simplug.training.cache.files")

SOURCE_KEY = "cache_source"


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
