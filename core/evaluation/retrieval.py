"""Held-out retrieval: new queries against a set of known candidates, scored blockwise.

This is how a similarity model is used after training: the candidates (answers, categories'
examples, products) are indexed, and each new query retrieves from them. Queries are scored in
blocks, so only one ``(block, candidates)`` similarity matrix is ever in memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from simplug.errors import DataError

DEFAULT_KS = (1, 5, 10)


@dataclass
class RetrievalTask:
    """Queries, candidates, and which candidates are relevant to each query.

    ``relevant(query_indices)`` returns a bool ``(len(query_indices), n_candidates)`` tensor.
    """

    queries: list[Any]
    candidates: list[Any]
    relevant: Callable[[torch.Tensor], torch.Tensor]
    description: str

    @classmethod
    def from_groups(cls, queries: Sequence[Any], candidates: Sequence[Any], exclude_self: bool = False) -> "RetrievalTask":
        """Group samples: a candidate is relevant when it has the query's group.

        With ``exclude_self`` (queries and candidates are the same list), each query's own
        position is not a candidate of its own.
        """
        query_groups = torch.tensor([int(s.group) for s in queries])
        candidate_groups = torch.tensor([int(s.group) for s in candidates])

        def relevant(rows: torch.Tensor) -> torch.Tensor:
            mask = query_groups[rows, None] == candidate_groups[None, :]
            if exclude_self:
                mask[torch.arange(len(rows)), rows] = False
            return mask

        where = "the other held-out items" if exclude_self else "the training items"
        return cls([s.obj for s in queries], [s.obj for s in candidates], relevant,
                   f"each held-out item retrieves from {where}; relevant = same group")

    @classmethod
    def from_pairs(cls, pairs: Sequence[Any], extra_candidates: Sequence[Any] = ()) -> "RetrievalTask":
        """Pair samples: each distinct ``obj_a`` is a query; its relevant candidates are the
        ``obj_b`` of its positive pairs; the candidates are every distinct ``obj_b`` (plus
        ``extra_candidates``, e.g. the training answers, as distractors)."""
        candidate_index: dict[str, int] = {}
        candidates: list[Any] = []

        def add(obj: Any) -> int:
            key = repr(obj)
            if key not in candidate_index:
                candidate_index[key] = len(candidates)
                candidates.append(obj)
            return candidate_index[key]

        query_index: dict[str, int] = {}
        queries: list[Any] = []
        positives: list[set[int]] = []
        for pair in pairs:
            b = add(pair.obj_b)
            key = repr(pair.obj_a)
            if key not in query_index:
                query_index[key] = len(queries)
                queries.append(pair.obj_a)
                positives.append(set())
            if float(pair.score) > 0:
                positives[query_index[key]].add(b)
        for obj in extra_candidates:
            add(obj)

        def relevant(rows: torch.Tensor) -> torch.Tensor:
            mask = torch.zeros(len(rows), len(candidates), dtype=torch.bool)
            for i, row in enumerate(rows.tolist()):
                mask[i, list(positives[row])] = True
            return mask

        return cls(queries, candidates, relevant,
                   "each distinct obj_a retrieves from every distinct obj_b; relevant = its positive pairs")


def score_rankings(
    query_embeddings: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    relevant: Callable[[torch.Tensor], torch.Tensor],
    similarity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ks: Sequence[int] = DEFAULT_KS,
    block_size: int = 1024,
) -> dict[str, float]:
    """precision@1, reciprocal rank (first relevant hit), recall@k and R-precision, averaged
    over the queries that have at least one relevant candidate."""
    n_candidates = candidate_embeddings.shape[0]
    too_big = [k for k in ks if k > n_candidates]
    if too_big:
        raise DataError(f"recall@{too_big[0]} asks for more results than the {n_candidates} candidates there are; use a smaller k")
    sums = {"precision@1": 0.0, "reciprocal_rank": 0.0, "r_precision": 0.0, **{f"recall@{k}": 0.0 for k in ks}}
    counted = 0
    for start in range(0, query_embeddings.shape[0], block_size):
        rows = torch.arange(start, min(start + block_size, query_embeddings.shape[0]))
        scores = similarity(query_embeddings[rows], candidate_embeddings)
        mask = relevant(rows)
        n_relevant = mask.sum(dim=1)
        keep = n_relevant > 0
        if not keep.any():
            continue
        order = torch.argsort(scores[keep], dim=1, descending=True, stable=True)
        hits = torch.gather(mask[keep], 1, order)
        n_relevant = n_relevant[keep]
        first = hits.float().argmax(dim=1)
        sums["precision@1"] += hits[:, 0].float().sum().item()
        sums["reciprocal_rank"] += (1.0 / (first + 1).double()).sum().item()
        for k in ks:
            sums[f"recall@{k}"] += hits[:, :k].any(dim=1).float().sum().item()
        positions = torch.arange(hits.shape[1])[None, :]
        in_top_r = hits & (positions < n_relevant[:, None])
        sums["r_precision"] += (in_top_r.sum(dim=1).double() / n_relevant.double()).sum().item()
        counted += int(keep.sum())
    if counted == 0:
        raise DataError("no query has a relevant candidate, so retrieval cannot be scored; check the evaluation data")
    return {name: value / counted for name, value in sums.items()}


def evaluate_retrieval(
    model: Any,
    task: RetrievalTask,
    distance: str = "cosine",
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 64,
) -> dict[str, float]:
    """Encode the task's queries and candidates with ``model`` (a SimilarityModel) and score."""
    from simplug.components.distance import resolve_distance

    similarity = resolve_distance(distance).similarity_matrix
    query_side, candidate_side = task_sides(model)
    queries = model.encode(task.queries, batch_size=batch_size, to_numpy=False, side=query_side)
    candidates = model.encode(task.candidates, batch_size=batch_size, to_numpy=False, side=candidate_side)
    return score_rankings(queries, candidates, task.relevant, similarity, ks=ks)


def task_sides(model: Any) -> tuple[str | None, str | None]:
    """The sides queries and candidates are encoded on: their own heads in a model with a head
    per side, the shared head otherwise."""
    return ("query", "document") if getattr(model, "sides", ()) else (None, None)
