from __future__ import annotations

from typing import Any

import torch

from simplug.loss import GroupLoss


class SupervisedContrastiveLoss(GroupLoss):
    """Supervised contrastive loss (Khosla et al., 2020) over the groups of a batch.

    For an anchor ``i`` with in-batch positives ``P(i)`` (same group, not itself), the loss
    is ``-mean_{p in P(i)} log softmax_i(s / temperature)[p]``, where the softmax runs over
    every other item of the batch and ``s`` is the distance's similarity. The batch loss
    is the mean over anchors that have a positive. Lower ``temperature`` (0.05-0.1) focuses
    on hard negatives. It needs several items per group in a batch: use
    ``GroupSimilarityDataLoader(m_per_group=...)``.
    """

    def __init__(self, temperature: float = 0.1, distance_metric_name: str = "cosine"):
        super().__init__(distance_metric_name=distance_metric_name)
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "temperature": self.temperature}

    def forward(self, embeddings: torch.Tensor, groups: torch.LongTensor) -> torch.Tensor:  # type: ignore[override]
        logits = self.distance_metric.similarity_matrix(embeddings) / self.temperature
        n = logits.shape[0]
        self_mask = torch.eye(n, dtype=torch.bool, device=logits.device)
        positive = (groups.unsqueeze(0) == groups.unsqueeze(1)) & ~self_mask
        # the anchor itself is never a candidate in its own softmax
        log_prob = logits - torch.logsumexp(logits.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
        has_positive = positive.any(dim=1)
        if not has_positive.any():
            return embeddings.sum() * 0.0  # keeps the graph; GroupLoss warns about such batches
        positives_per_anchor = positive.sum(dim=1).clamp(min=1)
        mean_log_prob = (log_prob * positive).sum(dim=1) / positives_per_anchor
        return -mean_log_prob[has_positive].mean()
