import torch
from torch import LongTensor, Tensor

from quaterion.distances import Distance
from quaterion.eval.accumulators import PairAccumulator
from quaterion.eval.base_metric import BaseMetric


class PairMetric(BaseMetric):
    """Relevance of object j to object i: the score of the pair (i, j), 0 for any other object."""

    def __init__(self, distance_metric_name: Distance = Distance.COSINE):
        super().__init__(distance_metric_name=distance_metric_name)
        self.accumulator = PairAccumulator()

    @staticmethod
    def prepare_labels(labels: Tensor, pairs: LongTensor, subgroups: Tensor) -> Tensor:
        n = pairs.shape[0] * 2
        target = torch.zeros((n, n), device=labels.device)
        target[pairs[:, 0], pairs[:, 1]] = labels.to(target.dtype)
        target[pairs[:, 1], pairs[:, 0]] = labels.to(target.dtype)
        return target

    def reset(self) -> None:
        self.accumulator.reset()

    def compute(self, embeddings: Tensor, labels: Tensor, pairs: LongTensor, subgroups: Tensor) -> Tensor:
        labels, distance_matrix = self.precompute(embeddings, labels=labels, pairs=pairs, subgroups=subgroups)
        return self.raw_compute(distance_matrix, labels)

    def evaluate(self) -> Tensor:
        return self.compute(**self.accumulator.state)

    def update(self, embeddings: Tensor, labels: Tensor, pairs: LongTensor, subgroups: Tensor, device=None) -> None:
        self.accumulator.update(embeddings, labels, pairs, subgroups, device)


