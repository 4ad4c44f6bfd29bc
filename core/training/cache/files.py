"""Embedding cache: configuration, the backend base class, fingerprints and the cache file format.

Frozen encoders give the same embedding for the same object every epoch, so their outputs are
computed once (the *fill*) and stored in a backend: a fixed-size table with one row per unique
object. Training then gathers rows by index tensors (see ``simplug.training.cache.fast_path``).

A persisted cache is two files in ``save_dir`` per encoder: ``<encoder>.rows`` (the raw rows,
row-major) and ``<encoder>.json`` (fingerprint, shape, dtype, size and SHA-256 of the rows
file). The JSON is written last, so a crash mid-write leaves a cache that fails verification
and is rebuilt, never one that is silently used. Every run that reads or writes an entry holds
its lock (:func:`cache_lock`) from the check to the last write, builds in a temporary file of its
own, and records the SHA-256 of that private file before publishing it: concurrent runs sharing
a ``cache_dir`` never leave a description that names one data set beside the rows of another.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

import torch
from simplug.files import file_lock, sha256_file
from simplug.registry import get_registry

CACHE_FORMAT = "simplug-cache"
CACHE_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------- fingerprints
def _hash_tensor(h: Any, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def encoder_fingerprint(encoder: Any, dtype: torch.dtype) -> dict[str, Any]:
    """What identifies an encoder's embeddings: its plugin, version, config and weights."""
    record = get_registry().find_instance("encoders", encoder)
    cls = type(encoder)
    identity = (
        {"plugin": record.qualified_name, "distribution": record.distribution, "version": record.version}
        if record is not None
        else {"class": f"{cls.__module__}:{cls.__qualname__}"}
    )
    try:
        config = json.dumps(encoder.get_config_dict(), sort_keys=True, default=repr)
    except Exception as exc:  # noqa: BLE001 - an odd config still gets a weights fingerprint
        config = f"<config not serialisable: {type(exc).__name__}>"
    h = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        _hash_tensor(h, tensor)
    return {
        **identity,
        "config_sha256": hashlib.sha256(config.encode()).hexdigest(),
        "weights_sha256": h.hexdigest(),
        "embedding_size": int(encoder.embedding_size),
        "dtype": str(dtype),
    }


def update_content_digest(h: Any, obj: Any) -> None:
    """Feed an object's content (not its identity) into a hash: used when keys are sample
    positions, so a changed object under the same position changes the fingerprint."""
    import numpy as np

    if isinstance(obj, torch.Tensor):
        h.update(b"T")
        _hash_tensor(h, obj)
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.dtype}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, (str, bytes, int, float, bool, type(None))):
        h.update(f"S{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode())
            update_content_digest(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}[".encode())
        for item in obj:
            update_content_digest(h, item)
        h.update(b"]")
    else:
        h.update(f"R{type(obj).__qualname__}:{obj!r};".encode())


# ---------------------------------------------------------------------------- cache files
def cache_paths(save_dir: str, encoder_name: str) -> tuple[str, str]:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder_name)
    return os.path.join(save_dir, f"{safe}.rows"), os.path.join(save_dir, f"{safe}.json")


def cache_lock(rows_path: str) -> Any:
    """The inter-process lock of one cache entry (its rows and its description)."""
    return file_lock(rows_path)


def expected_meta(fingerprint: str, num_rows: int, embedding_size: int, dtype: torch.dtype) -> dict[str, Any]:
    itemsize = torch.empty(0, dtype=dtype).element_size()
    return {
        "format": CACHE_FORMAT,
        "format_version": CACHE_FORMAT_VERSION,
        "fingerprint": fingerprint,
        "num_rows": int(num_rows),
        "embedding_size": int(embedding_size),
        "dtype": str(dtype),
        "size_bytes": int(num_rows) * int(embedding_size) * itemsize,
    }


# verify_cache_file's reason when there is nothing to reuse: a first build, not a rebuild
NO_CACHE_FILE = "no cache file yet"


def verify_cache_file(rows_path: str, meta_path: str, expected: dict[str, Any]) -> str | None:
    """``None`` when the persisted cache matches ``expected`` and its bytes are intact, else
    the reason it cannot be used."""
    if not os.path.exists(meta_path) or not os.path.exists(rows_path):
        return NO_CACHE_FILE
    try:
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError) as exc:
        return f"its description {meta_path} is unreadable ({exc})"
    if not isinstance(meta, dict):
        return f"its description {meta_path} is not a JSON object"
    for field, value in expected.items():
        if meta.get(field) != value:
            what = "the encoder or the data changed" if field == "fingerprint" else f"{field} differs"
            return f"{what} ({field}: cached {meta.get(field)!r}, now {value!r})"
    size = os.path.getsize(rows_path)
    if size != expected["size_bytes"]:
        return f"{rows_path} is truncated or padded ({size} bytes, expected {expected['size_bytes']})"
    if sha256_file(rows_path) != meta.get("sha256"):
        return f"{rows_path} is corrupt (its SHA-256 does not match the one recorded when it was written)"
    return None
