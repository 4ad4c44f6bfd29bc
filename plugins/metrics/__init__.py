"""Built-in metrics."""
from simplug import hookimpl

_RETRIEVAL = "simplug.plugins.metrics.retrieval"
_PAIR = "simplug.plugins.metrics.pair"


@hookimpl
def register_metrics(register):
    register("retrieval_precision", f"{_RETRIEVAL}:RetrievalPrecision", summary="share of relevant objects among the k nearest (precision@k)")
    register("retrieval_reciprocal_rank", f"{_RETRIEVAL}:RetrievalReciprocalRank", summary="1 / rank of the first relevant object")
    register("retrieval_r_precision", f"{_RETRIEVAL}:RetrievalRPrecision", summary="share of relevant objects among the R nearest, R = number of relevant")
    register("recall", f"{_RETRIEVAL}:Recall", summary="recall@k as a hit rate: 1 when any relevant object is among the k nearest")
    register("knn_accuracy", f"{_RETRIEVAL}:KnnAccuracy", summary="kNN classification accuracy: the majority group of the k nearest is the query's group")
    register("map_at_r", f"{_RETRIEVAL}:MapAtR", summary="MAP@R (Musgrave et al. 2020): mean average precision over the R nearest")
    register("map@r", f"{_RETRIEVAL}:MapAtR", summary="MAP@R, the same as map_at_r")
    register("pair_accuracy", f"{_PAIR}:PairAccuracy", summary="accuracy of similarity > threshold on labelled pairs (best or given threshold)")
    register("pair_auc", f"{_PAIR}:PairAuc", summary="ROC AUC of the similarity of positive against negative pairs")
