"""The cache backend contract: a fixed table of embedding rows, written once and read by index."""
from __future__ import annotations

import os

import torch

_CHUNK = 16 * 1024 * 1024

class CacheBackend:
    """A fixed table of ``num_rows`` embedding rows, written once by the fill and read by index.

    Subclasses decide where the table lives by creating ``self.storage`` (a
    ``(num_rows, embedding_size)`` tensor). ``file_backed`` backends keep the table in the cache
    file itself (``path``), so persisting them needs no copy and they need not fit in RAM.
    """

    file_backed = False

    def __init__(
        self,
        num_rows: int,
        embedding_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        path: str | None = None,
    ):
        self.num_rows = int(num_rows)
        self.embedding_size = int(embedding_size)
        self.dtype = dtype
        self.device = torch.device(device)
        self.path = path
        self.storage = self.allocate()

    def allocate(self) -> torch.Tensor:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.num_rows

    @property
    def payload_bytes(self) -> int:
        return self.num_rows * self.embedding_size * torch.empty(0, dtype=self.dtype).element_size()

    def write(self, positions: torch.Tensor, embeddings: torch.Tensor) -> None:
        """Store ``embeddings[i]`` in row ``positions[i]``."""
        if embeddings.dim() != 2 or embeddings.shape != (len(positions), self.embedding_size):
            raise ValueError(
                f"expected embeddings of shape ({len(positions)}, {self.embedding_size}), got {tuple(embeddings.shape)}"
            )
        self.storage[positions.to(self.storage.device)] = embeddings.to(self.storage.device, self.dtype)

    def rows(self, indices: torch.Tensor) -> torch.Tensor:
        """Rows at ``indices`` (on the storage device, in the storage dtype)."""
        return self.storage.index_select(0, indices)

    def load_file(self, path: str) -> None:
        """Fill the table from a verified cache rows file."""
        data = torch.from_file(path, shared=False, size=self.num_rows * self.embedding_size, dtype=self.dtype)
        self.storage.copy_(data.view(self.num_rows, self.embedding_size))

    def save_file(self, path: str) -> None:
        """Write the table to ``path`` as raw rows (for file-backed backends it already is)."""
        rows_per_chunk = max(1, _CHUNK // max(1, self.payload_bytes // max(1, self.num_rows)))
        with open(path, "wb") as fh:
            for start in range(0, self.num_rows, rows_per_chunk):
                block = self.storage[start : start + rows_per_chunk]
                fh.write(block.detach().cpu().contiguous().numpy().tobytes())
            fh.flush()
            os.fsync(fh.fileno())

    def flush(self) -> None:
        """Make written rows durable (file-backed backends)."""

    def close(self) -> None:
        self.storage = torch.empty(0, self.embedding_size, dtype=self.dtype)


