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
    """Loss over groups: ``forward(embeddings, groups)`` with one group id per embedding.

    A batch in which no group has two items holds no positive pair, and most group losses
    learn nothing from it; this warns (at the 1st, 10th, 100th... such batch, not at every
    step) with the fix: balanced batches from ``GroupSimilarityDataLoader(m_per_group=...)``.
    """

    target_kind = "groups"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.batches_without_positives = 0
        self.register_forward_pre_hook(_count_batches_without_positives, with_kwargs=True)

    def forward(self, embeddings: torch.Tensor, groups: torch.LongTensor) -> torch.Tensor:  # type: ignore[override]
        raise NotImplementedError


def subgroup_negatives(subgroups: torch.Tensor) -> torch.Tensor:
    """Boolean ``(n, n)`` matrix: True where two embeddings are in different subgroups."""
    return subgroups.unsqueeze(0) != subgroups.unsqueeze(1)


def _count_batches_without_positives(loss: GroupLoss, args: tuple, kwargs: dict) -> None:
    groups = kwargs.get("groups", args[1] if len(args) > 1 else None)
    if not isinstance(groups, torch.Tensor) or groups.numel() == 0:
        return
    _, counts = torch.unique(groups, return_counts=True)
    if bool((counts > 1).any()):
        return
    loss.batches_without_positives += 1
    n = loss.batches_without_positives
    if n == 10 ** (len(str(n)) - 1):  # 1, 10, 100, ...
        import warnings

        warnings.warn(
            f"{type(loss).__name__}: {n} batch(es) so far had no two items of the same group, so "
            "no positive pair to learn from; sample balanced batches with "
            "GroupSimilarityDataLoader(..., m_per_group=4) (or [train] m_per_group in a config)",
            RuntimeWarning,
            stacklevel=2,
        )
