from quaterion.eval.group.group_metric import GroupMetric
from quaterion.eval.group.retrieval_r_precision import RetrievalRPrecision, retrieval_r_precision

__all__ = ["GroupMetric", "RetrievalRPrecision", "retrieval_r_precision"]
