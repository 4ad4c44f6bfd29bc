"""Held-out scoring of ``simplug train`` and ``simplug evaluate``: a retrieval task built from
the job's data, scored for a model (and for its encoders alone, the untrained baseline)."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from simplug.components.distance import resolve_distance
from simplug.errors import ConfigError
from simplug.evaluation.baselines import encoder_only
from simplug.evaluation.retrieval import RetrievalTask, evaluate_retrieval, score_rankings, task_sides


def retrieval_task(kind: str, held_out: Sequence[Any], train: Sequence[Any], candidates: str = "train") -> Any:
    """Held-out queries against known candidates (see ``simplug.evaluation.retrieval``)."""
    if kind == "groups":
        if candidates == "train":
            return RetrievalTask.from_groups(held_out, train)
        if candidates == "self":
            return RetrievalTask.from_groups(held_out, held_out, exclude_self=True)
        raise ConfigError(f"[evaluate] candidates must be \"train\" or \"self\" for group data, got {candidates!r}")
    return RetrievalTask.from_pairs(held_out, extra_candidates=[p.obj_b for p in train])


class HeldOutScorer:
    """Scores a model on a retrieval task. When every encoder is frozen, the encoders run once
    and each later score only re-applies the head: scoring every epoch costs almost nothing."""

    def __init__(self, task: Any, distance: str = "cosine", ks: Sequence[int] = (1, 5, 10), batch_size: int = 64):
        self.task = task
        self.distance = distance
        self.similarity = resolve_distance(distance).similarity_matrix
        self.ks = tuple(ks)
        self.batch_size = batch_size
        self._encoded: tuple[Any, Any] | None = None

    def score(self, model: Any, heads: bool = True) -> dict[str, float]:
        """Metrics of ``model``; with ``heads=False``, of its encoders alone (the untrained-encoder
        baseline: what retrieval gives before any training)."""
        frozen = all(not e.trainable for e in model.encoders.values())
        if not heads and not frozen:
            return self.score(encoder_only(model))
        if frozen:
            if self._encoded is None:
                self._encoded = (
                    model.encoder_outputs(self.task.queries, self.batch_size),
                    model.encoder_outputs(self.task.candidates, self.batch_size),
                )
            was_training = model.training
            model.eval()
            with torch.inference_mode():
                # a model with a head per side encodes queries and candidates with their own heads
                if heads:
                    queries, candidates = (model.apply_heads(x, side) for x, side in zip(self._encoded, task_sides(model)))
                else:
                    queries, candidates = self._encoded
            model.train(was_training)
            return score_rankings(queries, candidates, self.task.relevant, self.similarity, ks=self.ks)
        return evaluate_retrieval(model, self.task, self.distance, self.ks, self.batch_size)
