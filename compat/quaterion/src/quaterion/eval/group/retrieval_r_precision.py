import torch

from quaterion.distances import Distance
from quaterion.eval.group.group_metric import GroupMetric


def retrieval_r_precision(distance_matrix: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over all (row, top-R slot) entries of the relevance, R = the row's number of relevant
    objects (rows weigh by their R, as in the original)."""
    relevant = labels.sum(dim=-1, keepdim=True)
    ranked = labels.gather(-1, torch.argsort(distance_matrix, dim=-1))
    slots = torch.arange(labels.shape[1], device=distance_matrix.device).expand_as(labels) < relevant
    return ranked[slots].float().mean()


class RetrievalRPrecision(GroupMetric):
    def __init__(self, distance_metric_name: Distance = Distance.COSINE):
        super().__init__(distance_metric_name=distance_metric_name)

    def raw_compute(self, distance_matrix: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return retrieval_r_precision(distance_matrix, labels)
