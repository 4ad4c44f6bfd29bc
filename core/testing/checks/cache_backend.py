"""The conformance check of a cache backend."""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

import torch
from simplug.components.cache_backend import CacheBackend
from simplug.files import sha256_file, write_json_atomic
from simplug.testing.checks.common import fail, generator, shape_of, step
from simplug.training.cache.files import expected_meta, verify_cache_file


def check_cache_backend(backend_class: Callable[..., Any], name: str | None = None) -> None:
    """The table contract that ``simplug.training.cache.fast_path`` relies on.

    ``backend_class`` is the registered class, or any callable taking the same arguments
    (``functools.partial(MyCache, option=...)``): the cache builds a backend as
    ``backend_class(num_rows, embedding_size, dtype, device)``, adding ``path=`` (the cache
    file) when the class is ``file_backed`` and the cache is persisted. Checked: a new table
    is zeros of the right shape and dtype (several processes each fill a share and the shares
    are summed); ``write(positions, embeddings)`` then ``rows(indices)`` and ``storage`` give
    the rows written at those positions, in float32 and float16; ``payload_bytes``; a wrongly
    shaped write is refused; ``save_file`` writes the cache file format (raw row-major rows,
    ``payload_bytes`` long), which passes ``verify_cache_file`` and which ``load_file`` of a new
    instance reads back; a file-backed backend persists in place and ``close()`` keeps the
    cache file it was given.
    """

    label = f"cache backend {name or getattr(backend_class, '__name__', type(backend_class).__name__)!r}"
    num_rows, size = 6, 5
    with step(label, f"the constructor ({num_rows}, {size}, torch.float32, 'cpu')"):
        first = backend_class(num_rows, size, torch.float32, "cpu")
    if not isinstance(first, CacheBackend):
        fail(f"{label} is a {type(first).__name__}, not a simplug.components.cache_backend.CacheBackend subclass")
    file_backed = bool(first.file_backed)
    _check_new_table(label, first, num_rows, size, torch.float32)
    with step(label, "close()"):
        first.close()

    values = torch.randn(num_rows, size, generator=generator())
    order = torch.tensor([4, 0, 2, 5, 1, 3])  # the fill writes in the encoder's order, in batches
    with tempfile.TemporaryDirectory(prefix="simplug-check-cache-") as tmp:
        for dtype in (torch.float32, torch.float16):
            path = os.path.join(tmp, f"{str(dtype)[6:]}.rows")
            # a persisted file-backed cache is built in the cache file itself
            args = {"path": path} if file_backed else {}
            with step(label, f"the constructor ({num_rows}, {size}, {dtype}, 'cpu'{', path=...' if args else ''})"):
                backend = backend_class(num_rows, size, dtype, "cpu", **args)
            _check_new_table(label, backend, num_rows, size, dtype)
            expected = values.to(dtype)
            for batch in order.split(4):
                with step(label, f"write(positions={batch.tolist()}, embeddings of shape {(len(batch), size)})"):
                    backend.write(batch, values[batch])
            _check_rows(label, backend, expected, f"after write() at positions {order.tolist()} in {dtype}")
            _check_refuses_bad_write(label, backend, size)

            with step(label, f"save_file({path!r})"):
                backend.save_file(path)
            _check_cache_file(label, path, expected, dtype)
            # the cache records the file's SHA-256 after save_file and verifies it before reuse
            meta = expected_meta("check", num_rows, size, dtype)
            saved_sha256 = sha256_file(path)
            write_json_atomic(path + ".json", {**meta, "sha256": saved_sha256})
            reason = verify_cache_file(path, path + ".json", meta)
            if reason is not None:
                fail(f"{label}: the file save_file wrote fails verify_cache_file ({reason})")
            with step(label, "close() after save_file"):
                backend.close()
            if not os.path.exists(path) or sha256_file(path) != saved_sha256:
                fail(f"{label}: close() removed or changed the cache file {path}; a backend may delete only "
                      "temporary files it created itself, never the cache file it was given as path")

            with step(label, f"the constructor for reuse ({num_rows}, {size}, {dtype}, 'cpu'{', path=...' if args else ''})"):
                reopened = backend_class(num_rows, size, dtype, "cpu", **args)
            with step(label, f"load_file({path!r})"):
                reopened.load_file(path)
            _check_rows(label, reopened, expected, "after load_file() of a saved cache file")
            with step(label, "close()"):
                reopened.close()

        # a file-backed backend is also given cache files other than its own (a copy elsewhere)
        source = os.path.join(tmp, "float32.rows")
        with step(label, f"load_file of another cache file into a new ({num_rows}, {size}, torch.float32, 'cpu')"):
            other = backend_class(num_rows, size, torch.float32, "cpu")
            other.load_file(source)
        _check_rows(label, other, values, "after load_file() of a cache file made by another instance")
        with step(label, "close()"):
            other.close()

    with step(label, f"the constructor (0, {size}, torch.float32, 'cpu') and rows() of no indices"):
        empty = backend_class(0, size, torch.float32, "cpu")
        got = empty.rows(torch.zeros(0, dtype=torch.long))
        empty.close()
    if shape_of(got) != (0, size):
        fail(f"{label}: rows() of no indices on an empty table has shape {shape_of(got)}, expected {(0, size)}")


def _check_new_table(label: str, backend: Any, num_rows: int, size: int, dtype: "torch.dtype") -> None:

    if len(backend) != num_rows or backend.num_rows != num_rows or backend.embedding_size != size:
        fail(f"{label}: built with num_rows={num_rows}, embedding_size={size} it reports len()={len(backend)}, "
              f"num_rows={backend.num_rows}, embedding_size={backend.embedding_size}")
    if backend.dtype != dtype:
        fail(f"{label}: built with dtype {dtype} its dtype attribute is {backend.dtype}")
    storage = getattr(backend, "storage", None)
    if not isinstance(storage, torch.Tensor) or shape_of(storage) != (num_rows, size) or storage.dtype != dtype:
        got = f"{shape_of(storage)} {storage.dtype}" if isinstance(storage, torch.Tensor) else type(storage).__name__
        fail(f"{label}: storage is {got}; allocate() must return the table, a {(num_rows, size)} tensor of {dtype} "
              "(training reads rows from storage directly)")
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if backend.payload_bytes != num_rows * size * itemsize:
        fail(f"{label}: payload_bytes is {backend.payload_bytes} for {num_rows} rows of {size} {dtype} values; "
              f"expected {num_rows * size * itemsize}")
    if storage.numel() and storage.detach().cpu().float().abs().sum().item() != 0:
        fail(f"{label}: a new table is not all zeros; allocate() must zero it (under several processes each "
              "fills a share of the rows and the tables are summed)")


def _check_rows(label: str, backend: Any, expected: "torch.Tensor", when: str) -> None:

    indices = torch.tensor([3, 0, 5, 3, 1])  # out of order and repeated, as a shuffled batch
    with step(label, f"rows({indices.tolist()}) {when}"):
        got = backend.rows(indices.to(backend.storage.device))
    if shape_of(got) != (len(indices), expected.shape[1]) or got.dtype != expected.dtype:
        fail(f"{label}: rows({indices.tolist()}) {when} is {shape_of(got)} {getattr(got, 'dtype', '')}; expected "
              f"{(len(indices), expected.shape[1])} {expected.dtype} (the storage dtype; training widens it)")
    if not torch.equal(got.cpu(), expected[indices]):
        fail(f"{label}: rows({indices.tolist()}) {when} does not return the rows written at those positions")
    if not torch.equal(backend.storage.detach().cpu(), expected):
        fail(f"{label}: storage {when} does not hold row i at index i; training gathers from storage directly")


def _check_refuses_bad_write(label: str, backend: Any, size: int) -> None:

    before = backend.storage.detach().cpu().clone()
    try:
        backend.write(torch.tensor([0, 1]), torch.ones(2, size + 1))
    except ValueError:
        pass
    except Exception as exc:
        fail(f"{label}: write() of embeddings of the wrong width raised {type(exc).__name__}, not ValueError: {exc}")
    else:
        fail(f"{label}: write() accepted embeddings of width {size + 1} for a table of embedding_size {size}; "
              "it must raise ValueError")
    if not torch.equal(backend.storage.detach().cpu(), before):
        fail(f"{label}: a refused write() changed the table")


def _check_cache_file(label: str, path: str, expected: "torch.Tensor", dtype: "torch.dtype") -> None:

    want = expected.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
    if not os.path.exists(path):
        fail(f"{label}: save_file({path!r}) wrote no file")
    with open(path, "rb") as fh:
        data = fh.read()
    if len(data) != len(want):
        fail(f"{label}: save_file wrote {len(data)} bytes for {expected.shape[0]} rows of {expected.shape[1]} "
              f"{dtype} values; the cache file format is the raw rows, row-major, payload_bytes "
              f"({len(want)}) long, with no header")
    if data != want:
        fail(f"{label}: the file save_file wrote does not hold the rows as raw row-major {dtype} values "
              "(the cache file format: row i at byte i * embedding_size * itemsize)")
