"""Built-in vector index backends."""
from simplug import hookimpl


@hookimpl
def register_indexes(register):
    register(
        "qdrant",
        "simplug.plugins.indexes.qdrant:QdrantIndex",
        summary="Qdrant through qdrant-client: embedded in a folder, or a server/cluster by URL (the 'index' extra)",
    )
