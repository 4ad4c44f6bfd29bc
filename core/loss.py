"""Similarity loss bases: pair losses and group losses."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from simplug.distance import Distance, resolve_distance


class SimilarityLoss(nn.Module):
    """Base of every loss. ``distance_metric_name`` names a registered distance."""

    #: "pairs" or "groups": what kind of targets ``forward`` takes
    target_kind: str = ""

    def __init__(self, distance_metric_name: str = "cosine"):
        super().__init__()
        self.distance_metric_name = distance_metric_name
        self.distance_metric: Distance = resolve_distance(distance_metric_name)

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric_name": self.distance_metric_name}


class PairwiseLoss(SimilarityLoss):
    """Loss over pairs: ``forward(embeddings, pairs, labels, subgroups)``.

    ``embeddings`` is ``(2N, dim)``; ``pairs`` is ``(N, 2)`` indices into it; ``labels`` the
    pair scores; ``subgroups`` one id per embedding: embeddings of different subgroups
    are negatives of each other.
    """

    target_kind = "pairs"

    def forward(  # type: ignore[override]
        self,
        embeddings: torch.Tensor,
        pairs: torch.LongTensor,
        labels: torch.Tensor,
        subgroups: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError


class GroupLoss(SimilarityLoss):
    """Loss over groups: ``forward(embeddings, groups)`` with one group id per embedding."""

    target_kind = "groups"

    def forward(self, embeddings: torch.Tensor, groups: torch.LongTensor) -> torch.Tensor:  # type: ignore[override]
        raise NotImplementedError


def subgroup_negatives(subgroups: torch.Tensor) -> torch.Tensor:
    """Boolean ``(n, n)`` matrix: True where two embeddings are in different subgroups."""
    return subgroups.unsqueeze(0) != subgroups.unsqueeze(1)
