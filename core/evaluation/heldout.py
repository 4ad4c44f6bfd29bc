"""Held-out scoring of ``simplug train`` and ``simplug evaluate``: a retrieval task built from
the job's data, scored for a model (and for its encoders alone, the untrained baseline) by the
ranking engine with registered metric plugins."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from simplug.components.head import EncoderHead
from simplug.errors import ConfigError
from simplug.evaluation.retrieval import (
    DEFAULT_KS,
    RetrievalTask,
    build_metrics,
    default_metric_specs,
    evaluate_retrieval,
    score_task,
    task_sides,
)
from simplug.model.similarity_model import SimilarityModel
from simplug.registry.building import build_component

#: the split names of ``simplug train``'s loaders (and of its cache's sources)
TRAIN_SPLIT, HELD_OUT_SPLIT = "train", "validation"


def retrieval_task(kind: str, held_out: Sequence[Any], train: Sequence[Any], candidates: str = "train") -> RetrievalTask:
    """Held-out queries against known candidates (see ``simplug.evaluation.retrieval``).

    Groups: each held-out item against the training items (``candidates="train"``) or against
    the other held-out items (``"self"``). Pairs: each distinct held-out ``obj_a`` against every
    distinct ``obj_b`` of both splits."""
    if kind == "groups":
        if candidates == "train":
            return RetrievalTask.from_groups(held_out, train, query_split=HELD_OUT_SPLIT, candidate_split=TRAIN_SPLIT)
        if candidates == "self":
            return RetrievalTask.from_groups(held_out, held_out, exclude_self=True, query_split=HELD_OUT_SPLIT,
                                             candidate_split=HELD_OUT_SPLIT)
        raise ConfigError(f"[evaluate] candidates must be \"train\" or \"self\" for group data, got {candidates!r}")
    n_train = len(train)
    return RetrievalTask.from_pairs(held_out, extra_candidates=[p.obj_b for p in train], pair_split=HELD_OUT_SPLIT,
                                    extra_records=[(TRAIN_SPLIT, n_train + j) for j in range(n_train)])


def encoder_only(model: Any) -> SimilarityModel:
    """The model's encoders with no head (their concatenated output), as a SimilarityModel."""
    similarity_model = getattr(model, "model", model)
    size = sum(e.embedding_size for e in similarity_model.encoders.values())
    head = build_component("heads", "empty", EncoderHead, input_embedding_size=size)
    return SimilarityModel(dict(similarity_model.encoders.items()), head)


class HeldOutScorer:
    """Scores a model on a retrieval task with ``metrics`` (registered metric specs; default:
    precision@1, reciprocal rank, R-precision and recall at ``ks``).

    When every encoder is frozen, the encoders run once (or not at all: ``use_encoder_outputs``
    takes outputs computed elsewhere, e.g. the rows of a training cache) and each later score
    only re-applies the head: scoring every epoch costs almost nothing."""

    def __init__(self, task: RetrievalTask, distance: str = "cosine", ks: Sequence[int] = DEFAULT_KS,
                 batch_size: int = 64, metrics: Sequence[Any] | None = None, block_size: int = 1024):
        self.task = task
        self.distance = distance
        self.ks = tuple(ks)
        self.batch_size = batch_size
        self.block_size = block_size
        self.metrics = build_metrics(metrics if metrics is not None else default_metric_specs(task.kind, self.ks), distance)
        self._encoded: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def names(self) -> list[str]:
        return list(self.metrics)

    @property
    def has_encoder_outputs(self) -> bool:
        return self._encoded is not None

    def use_encoder_outputs(self, queries: torch.Tensor, candidates: torch.Tensor) -> None:
        """The frozen encoders' outputs of the task's queries and candidates, in task order."""
        if queries.shape[0] != len(self.task.queries) or candidates.shape[0] != len(self.task.candidates):
            raise ValueError(f"encoder outputs for {queries.shape[0]} queries and {candidates.shape[0]} candidates, but the "
                             f"task has {len(self.task.queries)} and {len(self.task.candidates)}")
        self._encoded = (queries, candidates)

    def encoder_outputs(self, model: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen encoders' outputs of the task's queries and candidates (computed once)."""
        if self._encoded is None:
            queries = model.encoder_outputs(self.task.queries, self.batch_size)
            # a set scored against itself is encoded once
            candidates = queries if self.task.exclude_self else model.encoder_outputs(self.task.candidates, self.batch_size)
            self._encoded = (queries, candidates)
        return self._encoded

    def score(self, model: Any, heads: bool = True) -> dict[str, float]:
        """Metrics of ``model``; with ``heads=False``, of its encoders alone (the untrained-encoder
        baseline: what retrieval gives before any training)."""
        frozen = all(not e.trainable for e in model.encoders.values())
        if not heads and not frozen:
            return self.score(encoder_only(model))
        if not frozen:
            return evaluate_retrieval(model, self.task, batch_size=self.batch_size, metrics=self.metrics)
        encoded = [x.to(model.device) for x in self.encoder_outputs(model)]
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                # a model with a head per side encodes queries and candidates with their own heads
                if heads:
                    queries, candidates = (model.apply_heads(x, side) for x, side in zip(encoded, task_sides(model)))
                else:
                    queries, candidates = encoded
        finally:
            model.train(was_training)
        return score_task(self.task, queries, candidates, self.metrics, self.block_size)
