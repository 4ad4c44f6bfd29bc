"""Cache backend base: stores the embeddings of frozen encoders, one row per unique object."""
from __future__ import annotations

from typing import Hashable, Sequence

import torch


class CacheBackend:
    """Rows of embeddings addressed by key (``put``/``get``) or by row index (``rows``).

    ``persistent`` backends keep their rows across processes (see the ``disk`` backend).
    """

    persistent = False

    def __init__(self, embedding_size: int, dtype: torch.dtype = torch.float32):
        self.embedding_size = int(embedding_size)
        self.dtype = dtype
        self._index: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._index

    def put(self, keys: Sequence[Hashable], embeddings: torch.Tensor) -> None:
        raise NotImplementedError

    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get(self, keys: Sequence[Hashable]) -> torch.Tensor:
        try:
            idx = [self._index[k] for k in keys]
        except KeyError as exc:
            raise KeyError(f"key {exc.args[0]!r} is not in the cache; fill it first") from None
        return self.rows(torch.as_tensor(idx, dtype=torch.long))
