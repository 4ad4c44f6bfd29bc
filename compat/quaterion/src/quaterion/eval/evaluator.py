from typing import Any, Dict, Union

import torch

from quaterion.eval.base_metric import BaseMetric
from quaterion.eval.samplers import BaseSampler


class Evaluator:
    """``Evaluator(metrics, sampler)``: a metric or ``{name: metric}`` (a single one is named by its
    class); ``evaluate(dataset, model)`` returns ``{name: value}``."""

    def __init__(self, metrics: Union[BaseMetric, Dict[str, BaseMetric]], sampler: BaseSampler):
        self.metrics = metrics if isinstance(metrics, dict) else {metrics.__class__.__name__: metrics}
        self.sampler = sampler

    def evaluate(self, dataset: Any, model: Any) -> Dict[str, torch.Tensor]:
        results = {}
        for name, metric in self.metrics.items():
            labels, distance_matrix = self.sampler.sample(dataset, metric, model)
            results[name] = metric.raw_compute(distance_matrix, labels)
        self.sampler.reset()
        return results
