from __future__ import annotations

import torch
from simplug.components.cache_backend import CacheBackend


class DeviceCache(CacheBackend):
    """Rows on the training device (GPU memory when training on a GPU): batches are gathered
    where the head runs, with no host-to-device copy per step."""

    def allocate(self) -> torch.Tensor:
        return torch.zeros(self.num_rows, self.embedding_size, dtype=self.dtype, device=self.device)
