"""The embedding cache: configuration, the plan, the fill, the fast path and the cache files."""
from simplug.training.cache.config import CacheConfig, CacheType
from simplug.training.cache.files import NO_CACHE_FILE

__all__ = ["CacheConfig", "CacheType", "NO_CACHE_FILE"]
