from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Dict, Hashable, Optional, Union

KeyExtractorType = Callable[[Any], Hashable]


class CacheType(str, Enum):
    NONE = "none"  #: no cache
    AUTO = "auto"  #: GPU when CUDA is available, else CPU
    CPU = "cpu"
    GPU = "gpu"


@dataclass
class CacheConfig:
    """Which frozen encoders keep their outputs in memory during training.

    ``cache_type`` applies to every frozen encoder not in ``mapping`` (encoder key -> CacheType).
    ``key_extractors`` (one function, or one per encoder key) give the cache key of an object;
    without one an object is keyed by its sample's position in its loader. ``batch_size`` and
    ``num_workers`` are for the fill pass; ``save_dir`` keeps the filled cache between runs.
    """

    cache_type: Optional[CacheType] = CacheType.AUTO
    mapping: Dict[str, CacheType] = field(default_factory=dict)
    key_extractors: Union[KeyExtractorType, Dict[str, KeyExtractorType]] = field(default_factory=dict)
    batch_size: Optional[int] = 32
    num_workers: Optional[int] = None
    save_dir: Optional[str] = None
