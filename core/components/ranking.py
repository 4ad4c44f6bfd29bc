"""The ranking engine: which candidates are relevant to which query, the nearest candidates of
a block of queries in a deterministic order, and the driver that scores metrics block by block.

Every retrieval score in simplug is computed here (``Metric.compute``, the ``Evaluator``, the
held-out table of ``simplug train``, ``simplug evaluate`` and the baselines), so one protocol
gives one number whichever path asks for it:

- candidates are ordered by distance and, among equal distances, by their index (a stable
  sort): equal distance -> lower candidate index first;
- when queries are themselves candidates (a set scored against itself, ``exclude_self``), a
  query's own entry is removed from its candidates: from the ranking and from the relevant set;
- a query with no relevant candidate is left out of every mean;
- each block is ranked once, at the largest depth any metric needs.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from simplug.errors import ConfigError, DataError


# ---------------------------------------------------------------------------- relevance
class Relevance:
    """Which objects are relevant to which: same group, or the two sides of a positively
    scored pair (both ways). An object is never relevant to itself."""

    def __init__(self, targets: Mapping[str, Any], n: int):
        self.n = n
        if "groups" in targets:
            self.groups: torch.Tensor | None = torch.as_tensor(targets["groups"]).long().cpu()
            if self.groups.shape != (n,):
                raise DataError(f"'groups' has shape {tuple(self.groups.shape)} but there are {n} embeddings")
            _, inverse, counts = torch.unique(self.groups, return_inverse=True, return_counts=True)
            self.n_relevant = counts[inverse] - 1
        elif "pairs" in targets:
            self.groups = None
            pairs = torch.as_tensor(targets["pairs"]).long().cpu().reshape(-1, 2)
            labels = torch.as_tensor(targets["labels"]).cpu().reshape(-1)
            if len(labels) != len(pairs):
                raise DataError(f"{len(pairs)} pairs but {len(labels)} labels")
            if len(pairs) and (pairs.min() < 0 or pairs.max() >= n):
                raise DataError(f"pair indices must lie in [0, {n}) for {n} embeddings")
            keep = (labels > 0) & (pairs[:, 0] != pairs[:, 1])
            a, b = pairs[keep, 0], pairs[keep, 1]
            edges = torch.unique(torch.stack([torch.cat([a, b]), torch.cat([b, a])], dim=1), dim=0)
            self.sources, self.targets = edges[:, 0], edges[:, 1]
            self.n_relevant = torch.bincount(self.sources, minlength=n)
        else:
            raise DataError(f"metric targets need 'groups' or 'pairs', got keys {sorted(targets)}")

    @property
    def queries(self) -> torch.Tensor:
        """Indices of the objects that have at least one relevant object."""
        return torch.nonzero(self.n_relevant > 0).flatten()

    def block(self, queries: torch.Tensor) -> torch.Tensor:
        """Boolean ``(len(queries), n)``: relevance of every object to each query."""
        if self.groups is not None:
            rel = self.groups[queries].unsqueeze(1) == self.groups.unsqueeze(0)
        else:
            row_of = torch.full((self.n,), -1, dtype=torch.long)
            row_of[queries] = torch.arange(len(queries))
            rows = row_of[self.sources]
            hit = rows >= 0
            rel = torch.zeros(len(queries), self.n, dtype=torch.bool)
            rel[rows[hit], self.targets[hit]] = True
        rel[torch.arange(len(queries)), queries] = False
        return rel


def nearest(distances: torch.Tensor, depth: int) -> torch.Tensor:
    """Indices of the ``depth`` nearest candidates of each row, nearest first, ties broken
    by index: exactly the first ``depth`` columns of a stable argsort, without sorting rows."""
    rows, n = distances.shape
    if depth <= 0:
        return torch.empty(rows, 0, dtype=torch.long, device=distances.device)
    if 4 * depth >= n:
        return torch.sort(distances, dim=1, stable=True).indices[:, :depth]
    threshold = torch.topk(distances, depth, dim=1, largest=False, sorted=True).values[:, -1:]
    below = distances < threshold
    # of the candidates tied at the threshold, keep the lowest indices, as a stable sort would
    at = distances == threshold
    room = depth - below.sum(dim=1, keepdim=True)
    take = below | (at & (at.cumsum(dim=1) <= room))
    chosen = torch.nonzero(take)[:, 1].view(rows, depth)  # ascending index within each row
    order = torch.sort(distances.gather(1, chosen), dim=1, stable=True).indices
    return chosen.gather(1, order)




class QueryBlock:
    """Distances from a block of queries to every candidate, and what a metric needs from
    them: the nearest candidates in rank order and their relevance, the number of relevant
    candidates ``R`` of each query and the rank of its first relevant candidate.

    ``self_columns``: when the queries are themselves candidates, the column of each query's
    own entry. It is removed from the ranking (its distance is set to ``inf``, in place: the
    block owns ``distances``) and from the relevant set, and ``n_candidates`` does not count
    it. ``None`` when queries and candidates are different sets.

    ``query_groups`` / ``candidate_groups``: group labels when relevance means "same group"
    (for metrics that vote by group, e.g. kNN accuracy); ``None`` otherwise.
    """

    def __init__(
        self,
        distances: torch.Tensor,
        relevance: torch.Tensor,
        self_columns: torch.Tensor | None = None,
        query_groups: torch.Tensor | None = None,
        candidate_groups: torch.Tensor | None = None,
    ):
        if not torch.isfinite(distances).all():
            raise DataError(
                "the distances contain NaN or inf (e.g. a zero-length embedding under the cosine "
                "distance); check the model's embeddings"
            )
        if relevance.shape != distances.shape:
            raise DataError(f"relevance of shape {tuple(relevance.shape)} does not fit distances of shape {tuple(distances.shape)}")
        device = distances.device
        self.distances = distances
        self.relevance = relevance.to(device=device, dtype=torch.bool, copy=True)
        self.n_candidates = distances.shape[1]
        self.queries = self_columns
        if self_columns is not None:
            rows = torch.arange(len(self_columns), device=device)
            columns = self_columns.to(device)
            self.distances[rows, columns] = float("inf")
            self.relevance[rows, columns] = False
            self.n_candidates -= 1
        self.n_relevant = self.relevance.sum(dim=1)
        self.query_groups = None if query_groups is None else query_groups.to(device)
        self.candidate_groups = None if candidate_groups is None else candidate_groups.to(device)
        self._nearest: torch.Tensor | None = None
        self._ranked: torch.Tensor | None = None

    def prepare(self, depth: int) -> None:
        """Rank the ``depth`` nearest candidates once for every metric of this block."""
        depth = min(depth, self.n_candidates)
        if self._nearest is None or self._nearest.shape[1] < depth:
            self._nearest = nearest(self.distances, depth)
            self._ranked = self.relevance.gather(1, self._nearest)

    def ranked_indices(self, depth: int) -> torch.Tensor:
        """``(block, depth)`` candidate indices, nearest first."""
        self.prepare(depth)
        assert self._nearest is not None
        return self._nearest[:, :depth]

    def ranked_relevance(self, depth: int) -> torch.Tensor:
        """Boolean ``(block, depth)``: is the i-th nearest candidate relevant."""
        self.prepare(depth)
        assert self._ranked is not None
        return self._ranked[:, :depth]

    def first_relevant_rank(self) -> torch.Tensor:
        """1-based rank of each query's first relevant candidate (in the stable order)."""
        big = torch.finfo(self.distances.dtype).max
        d_rel = torch.where(self.relevance, self.distances, torch.full_like(self.distances, big))
        best = d_rel.min(dim=1, keepdim=True).values
        # the first relevant candidate in stable order: the lowest index among those at ``best``
        index = torch.arange(self.distances.shape[1], device=self.distances.device).expand_as(self.distances)
        at_best = self.relevance & (self.distances == best)
        first = torch.where(at_best, index, self.distances.shape[1]).min(dim=1, keepdim=True).values
        ahead = (self.distances < best) | ((self.distances == best) & (index < first))
        return ahead.sum(dim=1) + 1


# ---------------------------------------------------------------------------- the block driver
def score_blocks(
    metrics: Mapping[str, Any],
    queries: torch.Tensor,
    distances_of: Callable[[torch.Tensor], torch.Tensor],
    relevance_of: Callable[[torch.Tensor], torch.Tensor],
    exclude_self: bool = False,
    query_groups: torch.Tensor | None = None,
    candidate_groups: torch.Tensor | None = None,
    block_size: int = 1024,
) -> dict[str, float]:
    """Mean value of each metric (``{result name: Metric}``) over ``queries``, ranked block by block.

    ``queries``: query indices (a 1-d long tensor). ``distances_of(rows)`` gives the
    ``(len(rows), n_candidates)`` distances of query indices ``rows``, ``relevance_of(rows)``
    their boolean relevance. ``exclude_self``: queries and candidates are one set, query ``i``
    being candidate ``i``. ``query_groups`` (indexed like the queries) and
    ``candidate_groups``: group labels, for metrics that vote by group.

    Queries with no relevant candidate are left out; every value is NaN when no query is left.
    Each block is ranked once, at the largest depth of any metric, so at most one
    ``(block_size, n_candidates)`` distance matrix exists at a time.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ConfigError(f"block_size must be a positive int, got {block_size!r}")
    queries = torch.as_tensor(queries, dtype=torch.long).cpu().reshape(-1)
    # per-query values, averaged once at the end: the result does not depend on the block size
    values: dict[str, list[torch.Tensor]] = {key: [] for key in metrics}
    for start in range(0, len(queries), block_size):
        rows = queries[start : start + block_size]
        relevance = relevance_of(rows).to(device="cpu", dtype=torch.bool, copy=True)
        if exclude_self:
            relevance[torch.arange(len(rows)), rows] = False
        keep = relevance.any(dim=1)
        if not keep.any():
            continue
        rows, relevance = rows[keep], relevance[keep]
        block = QueryBlock(
            distances_of(rows),
            relevance,
            rows if exclude_self else None,
            query_groups=None if query_groups is None else torch.as_tensor(query_groups)[rows],
            candidate_groups=candidate_groups,
        )
        block.prepare(max((metric.depth(block) for metric in metrics.values()), default=0))
        for key, metric in metrics.items():
            per_query = metric.per_query(block)
            if not isinstance(per_query, torch.Tensor) or tuple(per_query.shape) != (len(rows),):
                got = tuple(per_query.shape) if isinstance(per_query, torch.Tensor) else type(per_query).__name__
                raise DataError(f"{key}: per_query(block) returned {got} for a block of {len(rows)} queries; it must "
                                f"return one value per query, shape ({len(rows)},)")
            values[key].append(per_query.double().cpu())
        del block
    if not any(values.values()):
        return {key: float("nan") for key in metrics}
    return {key: float(torch.cat(v).mean()) for key, v in values.items()}


def score_embeddings(
    metrics: Mapping[str, Any],
    query_embeddings: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    distance: Any,
    relevance_of: Callable[[torch.Tensor], torch.Tensor],
    queries: torch.Tensor | None = None,
    exclude_self: bool = False,
    query_groups: torch.Tensor | None = None,
    candidate_groups: torch.Tensor | None = None,
    block_size: int = 1024,
) -> dict[str, float]:
    """:func:`score_blocks` with distances from embeddings under ``distance`` (a ``Distance``).
    ``queries``: the rows of ``query_embeddings`` that are queries (default: all)."""
    query_embeddings = query_embeddings.detach()
    candidate_embeddings = candidate_embeddings.detach()
    if queries is None:
        queries = torch.arange(query_embeddings.shape[0])

    def distances_of(rows: torch.Tensor) -> torch.Tensor:
        return distance.distance_matrix(query_embeddings[rows.to(query_embeddings.device)], candidate_embeddings)

    return score_blocks(metrics, queries, distances_of, relevance_of, exclude_self=exclude_self,
                        query_groups=query_groups, candidate_groups=candidate_groups, block_size=block_size)
