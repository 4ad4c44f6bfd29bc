from __future__ import annotations

from typing import Any

from simplug.components.loss import PairwiseLoss, pairs_and_subgroup_negatives


class CosineSimilarityLoss(PairwiseLoss):
    """Regression of the cosine similarity of each pair onto its ``score``: the mean of
    ``(cos(a, b) - score)^2``. Scores should lie in [-1, 1] (the range of a cosine).

    When the batch holds several subgroups, every unordered couple of embeddings from
    different subgroups enters as one more pair with score ``negative_score``.
    """

    def __init__(self, negative_score: float = 0.0):
        super().__init__(distance_metric_name="cosine")
        self.negative_score = float(negative_score)

    def get_config_dict(self) -> dict[str, Any]:
        return {"negative_score": self.negative_score}

    def compute(self, embeddings, pairs, labels, subgroups):  # type: ignore[override]
        similarities, scores = pairs_and_subgroup_negatives(
            embeddings, pairs, labels, subgroups,
            self.distance_metric.similarity, self.distance_metric.similarity_matrix, self.negative_score,
        )
        return (similarities - scores).pow(2).mean()
