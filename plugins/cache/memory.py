from __future__ import annotations

from typing import Hashable, Sequence

import torch

from simplug.cache import CacheBackend


class MemoryCache(CacheBackend):
    """Embeddings in one growing CPU tensor."""

    def __init__(self, embedding_size: int, dtype: torch.dtype = torch.float32):
        super().__init__(embedding_size, dtype)
        self._data = torch.empty(0, self.embedding_size, dtype=dtype)

    def put(self, keys: Sequence[Hashable], embeddings: torch.Tensor) -> None:
        if embeddings.shape != (len(keys), self.embedding_size):
            raise ValueError(
                f"expected embeddings of shape ({len(keys)}, {self.embedding_size}), "
                f"got {tuple(embeddings.shape)}"
            )
        new_rows = []
        for key, row in zip(keys, embeddings):
            if key in self._index:
                self._data[self._index[key]] = row.to(self.dtype)
            else:
                self._index[key] = len(self._index)
                new_rows.append(row)
        if new_rows:
            self._data = torch.cat([self._data, torch.stack(new_rows).to(self.dtype).cpu()])

    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        return self._data.index_select(0, indices.cpu())
