from __future__ import annotations

import torch
from simplug.components.cache_backend import CacheBackend


class MemoryCache(CacheBackend):
    """Rows in one preallocated CPU tensor: the payload and nothing more (no growth copies)."""

    def allocate(self) -> torch.Tensor:
        # zeros, not empty: under several processes each fills a share and the shares are summed
        return torch.zeros(self.num_rows, self.embedding_size, dtype=self.dtype)
