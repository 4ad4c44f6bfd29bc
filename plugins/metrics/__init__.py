"""Built-in metrics."""
from simplug import hookimpl


@hookimpl
def register_metrics(register):
    register(
        "retrieval_precision",
        "simplug.plugins.metrics.retrieval:RetrievalPrecision",
        summary="share of relevant objects among the k nearest (precision@k)",
    )
    register(
        "retrieval_reciprocal_rank",
        "simplug.plugins.metrics.retrieval:RetrievalReciprocalRank",
        summary="1 / rank of the first relevant object",
    )
