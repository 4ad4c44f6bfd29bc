"""Embedding cache: configuration, the backend base class, fingerprints and the cache file format.

Frozen encoders give the same embedding for the same object every epoch, so their outputs are
computed once (the *fill*) and stored in a backend: a fixed-size table with one row per unique
object. Training then gathers rows by index tensors (see ``simplug.caching``).

A persisted cache is two files in ``save_dir`` per encoder: ``<encoder>.rows`` (the raw rows,
row-major) and ``<encoder>.json`` (fingerprint, shape, dtype, size and SHA-256 of the rows
file). The JSON is written last, so a crash mid-write leaves a cache that fails verification
and is rebuilt, never one that is silently used.
"""
from __future__ import annotations

import enum
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping

import torch

from simplug.errors import ConfigError

CACHE_FORMAT = "simplug-cache"
CACHE_FORMAT_VERSION = 1
_CHUNK = 16 * 1024 * 1024


class CacheType(str, enum.Enum):
    """Where cached embeddings live. Any registered cache backend name is accepted too."""

    AUTO = "auto"  # the training device: GPU memory when training on a GPU, else CPU memory
    CPU = "cpu"  # the ``memory`` backend
    GPU = "gpu"  # the ``device`` backend


# cache types that are spelled as backend names
TYPE_BACKENDS = {CacheType.CPU.value: "memory", CacheType.GPU.value: "device"}


def backend_name(cache_type: CacheType | str, training_device: torch.device) -> str:
    """The registered backend name a cache type stands for on ``training_device``."""
    value = cache_type.value if isinstance(cache_type, CacheType) else str(cache_type)
    if value == CacheType.AUTO.value:
        return "device" if training_device.type != "cpu" else "memory"
    return TYPE_BACKENDS.get(value, value)


KeyExtractor = Callable[[Any], Hashable]


@dataclass
class CacheConfig:
    """What ``TrainableModel.configure_caches`` returns.

    ``cache_type``: applies to every frozen encoder when ``mapping`` is not given.
    ``mapping``: ``{encoder_name: cache_type}``; only the named encoders are cached.
    ``key_extractors``: a function (or ``{encoder_name: function}``) giving each object a hashable
    key; objects with equal keys share one row. Default: each object of each sample is its own row.
    ``batch_size`` / ``num_workers``: of the fill. ``save_dir``: persist and reuse the cache.
    ``half_precision``: store rows as float16 (half the memory; rows are widened on use).
    """

    cache_type: CacheType | str = CacheType.AUTO
    mapping: Mapping[str, CacheType | str] | None = None
    key_extractors: KeyExtractor | Mapping[str, KeyExtractor] | None = None
    batch_size: int = 32
    num_workers: int | None = None
    save_dir: str | os.PathLike | None = None
    half_precision: bool = False

    def __post_init__(self) -> None:
        _check_type_value(self.cache_type, "cache_type")
        if self.mapping is not None:
            if not isinstance(self.mapping, Mapping):
                raise ConfigError(f"CacheConfig.mapping is {{encoder_name: cache_type}}, got {type(self.mapping).__name__}")
            for name, value in self.mapping.items():
                _check_type_value(value, f"mapping[{name!r}]")
        extractors = self.key_extractors
        if extractors is not None and not callable(extractors):
            if not isinstance(extractors, Mapping) or not all(callable(f) for f in extractors.values()):
                raise ConfigError(
                    "CacheConfig.key_extractors is a function of an object returning a hashable key, "
                    "or a dict {encoder_name: function}"
                )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"CacheConfig.batch_size must be a positive int, got {self.batch_size!r}")
        if self.num_workers is not None and (not isinstance(self.num_workers, int) or self.num_workers < 0):
            raise ConfigError(f"CacheConfig.num_workers must be None or an int >= 0, got {self.num_workers!r}")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float16 if self.half_precision else torch.float32

    def key_extractor(self, encoder_name: str) -> KeyExtractor | None:
        if self.key_extractors is None:
            return None
        if callable(self.key_extractors):
            return self.key_extractors
        return self.key_extractors.get(encoder_name)

    @classmethod
    def from_spec(cls, spec: Any) -> "CacheConfig | None":
        """A config from ``None``/``False`` (no cache), ``True``/a type name, or a dict of arguments."""
        if spec is None or spec is False:
            return None
        if isinstance(spec, CacheConfig):
            return spec
        if spec is True:
            return cls()
        if isinstance(spec, (str, CacheType)):
            return cls(cache_type=spec)
        if isinstance(spec, Mapping):
            allowed = set(cls.__dataclass_fields__)
            unknown = sorted(set(spec) - allowed)
            if unknown:
                raise ConfigError(f"unknown cache setting(s) {unknown}; the settings are: {', '.join(sorted(allowed))}")
            return cls(**spec)
        raise ConfigError(f"a cache config is a CacheConfig, a cache type name or a table of settings, got {type(spec).__name__}")


def _check_type_value(value: Any, what: str) -> None:
    if isinstance(value, CacheType):
        return
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"CacheConfig.{what} must be a CacheType (AUTO, CPU, GPU) or a registered cache backend "
            f"name such as 'memory', 'device' or 'disk'; got {value!r}"
        )


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


# ---------------------------------------------------------------------------- fingerprints
def _hash_tensor(h: Any, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def encoder_fingerprint(encoder: Any, dtype: torch.dtype) -> dict[str, Any]:
    """What identifies an encoder's embeddings: its plugin, version, config and weights."""
    from simplug.registry import get_registry

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


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_CHUNK)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


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
    if file_sha256(rows_path) != meta.get("sha256"):
        return f"{rows_path} is corrupt (its SHA-256 does not match the one recorded when it was written)"
    return None


def write_meta(meta_path: str, meta: dict[str, Any]) -> None:
    tmp = meta_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, meta_path)
