"""Metrics of labelled pairs: how well the similarity of a pair separates positives from
negatives, without ranking against other objects."""
from __future__ import annotations

from typing import Any

import torch
from simplug.components.metric import PairScoreMetric
from simplug.errors import ConfigError


class PairAccuracy(PairScoreMetric):
    """Accuracy of "similar when similarity > threshold" on positive and negative pairs.

    With ``threshold=None`` (default) the threshold that gives the best accuracy on the
    evaluated pairs is used (as in sentence-transformers' binary classification evaluator);
    that is optimistic for the data it was chosen on, so fix ``threshold`` to score held-out
    data with a threshold chosen elsewhere. ``best_threshold`` holds the last one found.
    """

    def __init__(self, threshold: float | None = None, distance_metric_name: str = "cosine", positive_above: float = 0.0):
        super().__init__(distance_metric_name=distance_metric_name, positive_above=positive_above)
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            raise ConfigError(f"threshold must be a number or None (best threshold), got {threshold!r}")
        self.threshold = None if threshold is None else float(threshold)
        self.best_threshold: float | None = None

    @property
    def name(self) -> str:
        return "pair_accuracy"

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "threshold": self.threshold}

    def from_scores(self, similarities: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        n = len(similarities)
        if self.threshold is not None:
            return ((similarities > self.threshold) == positive).double().mean()
        # predict "positive" for the c highest scores, for every cut c that does not split
        # equal scores: correct = positives above the cut + negatives below it
        order = torch.argsort(similarities, descending=True, stable=True)
        s, pos = similarities[order], positive[order].long()
        pos_above = torch.cat([pos.new_zeros(1), pos.cumsum(0)])
        neg_below = (n - int(pos.sum())) - (torch.arange(n + 1, device=s.device) - pos_above)
        correct = (pos_above + neg_below).double()
        # a cut between s[c-1] and s[c] is possible only where they differ (c = 0 and n always)
        allowed = torch.ones(n + 1, dtype=torch.bool, device=s.device)
        allowed[1:n] = s[:-1] != s[1:]
        correct[~allowed] = -1
        best = int(torch.argmax(correct))
        if best == 0:
            self.best_threshold = float(s[0])
        elif best == n:
            self.best_threshold = float(s[-1]) - 1e-6
        else:
            self.best_threshold = float((s[best - 1] + s[best]) / 2)
        return correct[best] / n


class PairAuc(PairScoreMetric):
    """ROC AUC of the similarity for positive against negative pairs: the chance that a
    random positive pair scores higher than a random negative one, ties counting one half
    (the Mann-Whitney statistic, equal to ``sklearn.metrics.roc_auc_score``)."""

    @property
    def name(self) -> str:
        return "pair_auc"

    def from_scores(self, similarities: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        n = len(similarities)
        s, order = torch.sort(similarities, stable=True)
        pos = positive[order]
        # average 1-based rank of each run of equal scores
        _, inverse, counts = torch.unique_consecutive(s, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()
        mid_rank = ends - (counts.double() - 1) / 2
        ranks = mid_rank[inverse]
        n_pos = int(pos.sum())
        n_neg = n - n_pos
        return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
