from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from simplug.components.loss import EmbeddingGroupLoss, group_masks


class FastAPLoss(EmbeddingGroupLoss):
    """FastAP (Cakir et al., 2019): 1 - a differentiable average precision per anchor.

    Distances are squared L2 between L2-normalised embeddings (0..4), counted into
    ``num_bins`` histogram bins with triangular (linear interpolation) kernels, so the
    precision at each bin is a smooth function of the embeddings. The mean over anchors
    that have a positive.
    """

    def __init__(self, num_bins: int = 10):
        super().__init__(distance_metric_name="euclidean")
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
        self.num_bins = num_bins

    def get_config_dict(self) -> dict[str, Any]:
        return {"num_bins": self.num_bins}

    def reference_loss(self, embeddings, groups, references, reference_groups, same_set):  # type: ignore[override]
        positive, negative = group_masks(groups, reference_groups, same_set)
        has_positive = positive.any(1)
        if not has_positive.any():
            return embeddings.sum() * 0.0
        q = F.normalize(embeddings, dim=1)
        r = q if same_set else F.normalize(references.to(q.dtype), dim=1)
        sq_dist = (2.0 - 2.0 * q @ r.T).clamp_min(0.0)
        width = 4.0 / self.num_bins
        centres = torch.linspace(0.0, 4.0, self.num_bins + 1, dtype=q.dtype, device=q.device)
        # (anchors, candidates, bins): how much of each candidate falls into each bin
        share = F.relu(1.0 - (sq_dist.unsqueeze(2) - centres).abs() / width)
        pos_hist = (share * positive.unsqueeze(2)).sum(1)
        all_hist = pos_hist + (share * negative.unsqueeze(2)).sum(1)
        pos_cum, all_cum = pos_hist.cumsum(1), all_hist.cumsum(1)
        # precision at each bin times the positives in it (empty bins contribute nothing)
        safe = (pos_hist * pos_cum > 0) & (all_cum > 0)
        precision_mass = torch.where(safe, pos_hist * pos_cum / all_cum.masked_fill(~safe, 1.0), 0.0)
        ap = precision_mass.sum(1)[has_positive] / positive.sum(1)[has_positive]
        return (1.0 - ap).mean()
