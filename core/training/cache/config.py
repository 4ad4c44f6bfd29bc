"""Cache configuration: which encoders are cached, in which backend and dtype, and where."""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping

import torch
from simplug.errors import ConfigError
from simplug.registry.building import positive_int


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
        positive_int(self.batch_size, "CacheConfig.batch_size")
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


