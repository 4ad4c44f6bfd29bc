"""Built-in distances."""
from simplug import hookimpl


@hookimpl
def register_distances(register):
    register("cosine", "simplug.plugins.distances.cosine:Cosine", summary="1 - cosine similarity (0..2)")
    register("euclidean", "simplug.plugins.distances.euclidean:Euclidean", summary="L2 distance")
    register("manhattan", "simplug.plugins.distances.manhattan:Manhattan", summary="L1 distance")
    register("dot_product", "simplug.plugins.distances.dot_product:DotProduct", summary="negative dot product")
