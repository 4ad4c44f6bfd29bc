from quaterion.train.cache.cache_config import CacheConfig, CacheType, KeyExtractorType
from quaterion.train.cache.cache_encoder import CacheEncoder, CacheMode
from quaterion.train.cache.in_memory_cache_encoder import InMemoryCacheEncoder

__all__ = ["CacheConfig", "CacheType", "CacheEncoder", "InMemoryCacheEncoder"]
