"""Built-in cache backends."""
from simplug import hookimpl


@hookimpl
def register_cache_backends(register):
    register("memory", "simplug.plugins.cache.memory:MemoryCache", summary="embeddings in a CPU tensor")
    register("device", "simplug.plugins.cache.device:DeviceCache", summary="embeddings on the training device (GPU memory on a GPU)")
    register("disk", "simplug.plugins.cache.disk:DiskCache", summary="embeddings in a memory-mapped file: caches larger than RAM")
