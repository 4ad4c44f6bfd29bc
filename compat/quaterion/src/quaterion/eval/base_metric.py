from typing import Any, Dict, Tuple

import torch

from quaterion import _simplug
from quaterion.distances import Distance


class BaseMetric(_simplug.Metric):
    """The original's metric interface: ``compute(...)`` on one batch, ``update(...)`` to accumulate
    and ``evaluate()`` over everything accumulated, ``raw_compute(distance_matrix, labels)``.

    ``precompute`` ranks every embedding against all the others, itself excluded (its distance is
    set above the maximum)."""

    def __init__(self, distance_metric_name: Distance = Distance.COSINE):
        self.distance = Distance.get_by_name(distance_metric_name)
        self._distance_metric_name = distance_metric_name
        self.distance_metric_name = distance_metric_name

    def get_config_dict(self) -> Dict[str, Any]:
        name = self._distance_metric_name
        return {"distance_metric_name": name.value if isinstance(name, Distance) else name}

    def compute(self, *args, **kwargs) -> torch.Tensor:
        raise NotImplementedError()

    def evaluate(self) -> torch.Tensor:
        raise NotImplementedError()

    def raw_compute(self, distance_matrix: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError()

    def precompute(self, embeddings: torch.Tensor, **targets) -> Tuple[torch.Tensor, torch.Tensor]:
        labels = self.prepare_labels(**targets)
        distance_matrix = self.distance.distance_matrix(embeddings).detach().clone()
        self_mask = torch.eye(distance_matrix.shape[0], dtype=torch.bool, device=distance_matrix.device)
        distance_matrix[self_mask] = torch.max(distance_matrix) + 1
        return labels.float(), distance_matrix

    @staticmethod
    def prepare_labels(**targets) -> torch.Tensor:
        raise NotImplementedError()
