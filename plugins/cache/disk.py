from __future__ import annotations

import os
import shutil
import tempfile
import weakref

import torch
from simplug.components.cache_backend import CacheBackend


class DiskCache(CacheBackend):
    """Rows in a memory-mapped file: the operating system pages rows in and out on demand, so a
    cache larger than RAM works. The file is the persisted cache itself when ``save_dir`` is set;
    otherwise it lives in a temporary directory removed on ``close``."""

    file_backed = True

    def allocate(self) -> torch.Tensor:
        self._own_dir = None
        if self.path is None:
            self._own_dir = tempfile.mkdtemp(prefix="simplug-cache-")
            weakref.finalize(self, shutil.rmtree, self._own_dir, True)
            self.path = os.path.join(self._own_dir, "rows")
        size = self.num_rows * self.embedding_size
        if not os.path.exists(self.path) or os.path.getsize(self.path) != self.payload_bytes:
            with open(self.path, "wb") as fh:
                fh.truncate(self.payload_bytes)  # sparse: no page is written until a row is
        if size == 0:
            return torch.zeros(0, self.embedding_size, dtype=self.dtype)
        # shared=True maps the file MAP_SHARED: writes go to the file, reads page in lazily
        return torch.from_file(self.path, shared=True, size=size, dtype=self.dtype).view(self.num_rows, self.embedding_size)

    def load_file(self, path: str) -> None:
        if os.path.abspath(path) != os.path.abspath(self.path):
            super().load_file(path)

    def save_file(self, path: str) -> None:
        self.flush()
        if os.path.abspath(path) != os.path.abspath(self.path):
            shutil.copyfile(self.path, path)

    def flush(self) -> None:
        # MAP_SHARED pages are in the page cache, which ordinary reads see; fsync makes them durable
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        super().close()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None
