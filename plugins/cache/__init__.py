"""Built-in cache backends."""
from simplug import hookimpl


@hookimpl
def register_cache_backends(register):
    register("memory", "simplug.plugins.cache.memory:MemoryCache", summary="embeddings in a CPU tensor")
