from __future__ import annotations

import os
from typing import Any, Dict, Hashable, List

import torch
from torch import Tensor

from quaterion.train.cache.cache_config import CacheType
from quaterion.train.cache.cache_encoder import CacheEncoder
from quaterion_models.encoders import Encoder


class InMemoryCacheEncoder(CacheEncoder):
    """Keeps each key's embedding in a dict (``_cache``) on the CPU or GPU."""

    def __init__(self, encoder: Encoder, cache_type: CacheType = CacheType.AUTO):
        super().__init__(encoder)
        if cache_type == CacheType.AUTO:
            cache_type = CacheType.GPU if torch.cuda.is_available() else CacheType.CPU
        self.cache_type = cache_type
        self._cache: Dict[Hashable, Tensor] = {}
        self._meta: Dict[Hashable, Any] = {}
        self._stacked: Tensor | None = None
        self._index: Dict[Hashable, int] = {}

    @property
    def device(self) -> str:
        return "cuda" if self.cache_type == CacheType.GPU else "cpu"

    def forward(self, batch: List[Hashable]) -> Tensor:
        if self._stacked is None:
            self.finish_fill()
        try:
            rows = [self._index[key] for key in batch]
        except KeyError as exc:
            raise KeyError(
                f"cache miss for key {exc.args[0]!r}: the cache was filled from other data (a key "
                "extractor that gives other keys now, or a loader changed after the fill)"
            ) from None
        found = self._stacked[torch.tensor(rows, dtype=torch.long, device=self._stacked.device)]
        # a GPU cache serving a model that runs on the CPU (or the reverse) hands rows over
        model_device = next(self._encoder.parameters(), found).device
        return found.to(model_device)

    def is_filled(self) -> bool:
        return len(self._cache) > 0

    def fill_cache(self, keys: List[Hashable], data: Any, meta: List[Any] | None = None) -> None:
        embeddings = self._encoder(data).detach().to(self.device)
        for i, key in enumerate(keys):
            self._cache[key] = embeddings[i]
            if meta is not None:
                self._meta[key] = meta[i]
        self._stacked = None

    def finish_fill(self) -> None:
        keys = list(self._cache)
        self._index = {key: i for i, key in enumerate(keys)}
        if keys:
            self._stacked = torch.stack([self._cache[k] for k in keys])
        else:
            self._stacked = torch.empty(0, self.embedding_size, device=self.device)

    def reset_cache(self) -> None:
        self._cache.clear()
        self._meta.clear()
        self._stacked = None
        self._index = {}

    def save_cache(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        keys = list(self._cache)
        stacked = torch.stack([self._cache[k] for k in keys]).cpu() if keys else torch.empty(0)
        torch.save({"keys": keys, "embeddings": stacked}, path)

    def load_cache(self, path: str) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        self._cache = {key: row for key, row in zip(state["keys"], state["embeddings"])}
        self._stacked = None
