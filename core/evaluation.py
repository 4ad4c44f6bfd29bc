"""Evaluate a model on a whole data set of pairs or groups."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from simplug.errors import DataError
from simplug.metric import Metric
from simplug.samples import SimilarityGroupSample, SimilarityPairSample


def dataset_targets(dataset: Sequence[Any]) -> tuple[list[Any], dict[str, torch.Tensor]]:
    """Objects to encode and the targets that say which are relevant to which."""
    if len(dataset) == 0:
        raise DataError("cannot evaluate on an empty data set")
    samples = [dataset[i] for i in range(len(dataset))]
    if all(isinstance(s, SimilarityGroupSample) for s in samples):
        return [s.obj for s in samples], {"groups": torch.tensor([int(s.group) for s in samples])}
    if all(isinstance(s, SimilarityPairSample) for s in samples):
        n = len(samples)
        objects = [s.obj_a for s in samples] + [s.obj_b for s in samples]
        targets = {
            "pairs": torch.stack([torch.arange(n), torch.arange(n, 2 * n)], dim=1),
            "labels": torch.tensor([float(s.score) for s in samples]),
            "subgroups": torch.tensor([int(s.subgroup) for s in samples] * 2),
        }
        return objects, targets
    kinds = sorted({type(s).__name__ for s in samples})
    raise DataError(f"evaluation data must be all SimilarityPairSample or all SimilarityGroupSample, got {kinds}")


class Evaluator:
    """Encodes a data set once and computes each metric over all of it."""

    def __init__(self, metrics: Metric | Sequence[Metric | str | Mapping[str, Any]], batch_size: int = 64):
        from simplug.config import build_component

        if isinstance(metrics, (Metric, str, Mapping)):
            metrics = [metrics]
        self.metrics = [build_component("metrics", m, Metric) for m in metrics]
        self.batch_size = batch_size

    def evaluate(self, dataset: Sequence[Any], model: Any) -> dict[str, float]:
        similarity_model = getattr(model, "model", model)
        objects, targets = dataset_targets(dataset)
        embeddings = similarity_model.encode(objects, batch_size=self.batch_size, to_numpy=False)
        return {metric.name: float(metric.compute(embeddings, targets)) for metric in self.metrics}
