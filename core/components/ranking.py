"""The ranking engine: which candidates are relevant to which query, and the nearest candidates
of a block of queries in a deterministic order.

Every retrieval score in simplug is computed here. Rankings are deterministic: candidates are
ordered by distance and, among equal distances, by their index in the data set (a stable sort).
A query never retrieves itself.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from simplug.errors import DataError



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


def relevance_matrix(targets: Mapping[str, Any], n: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean ``(n, n)``: ``[i, j]`` is True when object ``j`` is a relevant answer to query ``i``."""
    return Relevance(targets, n).block(torch.arange(n)).to(device)


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
    them: the relevance of the nearest candidates in rank order, the number of relevant
    objects ``R`` of each query and the rank of its first relevant object.

    ``distances[i, queries[i]]`` is set to ``inf`` (in place: the block owns ``distances``)
    so a query never retrieves itself.
    """

    def __init__(self, distances: torch.Tensor, relevance: torch.Tensor, queries: torch.Tensor):
        if not torch.isfinite(distances).all():
            raise DataError(
                "the distances contain NaN or inf (e.g. a zero-length embedding under the cosine "
                "distance); check the model's embeddings"
            )
        self.distances = distances
        rows = torch.arange(len(queries), device=distances.device)
        self.distances[rows, queries.to(distances.device)] = float("inf")
        self.relevance = relevance.to(distances.device)
        self.queries = queries
        self.n_relevant = self.relevance.sum(dim=1)
        self.n_candidates = distances.shape[1] - 1
        self._ranked: torch.Tensor | None = None

    def prepare(self, depth: int) -> None:
        """Rank the ``depth`` nearest candidates once for every metric of this block."""
        depth = min(depth, self.n_candidates)
        if self._ranked is None or self._ranked.shape[1] < depth:
            self._ranked = self.relevance.gather(1, nearest(self.distances, depth))

    def ranked_relevance(self, depth: int) -> torch.Tensor:
        """Boolean ``(block, depth)``: is the i-th nearest candidate relevant."""
        self.prepare(depth)
        assert self._ranked is not None
        return self._ranked[:, :depth]

    def first_relevant_rank(self) -> torch.Tensor:
        """1-based rank of each query's first relevant object (in the stable order)."""
        big = torch.finfo(self.distances.dtype).max
        d_rel = torch.where(self.relevance, self.distances, torch.full_like(self.distances, big))
        best = d_rel.min(dim=1, keepdim=True).values
        # the first relevant object in stable order: the lowest index among those at ``best``
        index = torch.arange(self.distances.shape[1], device=self.distances.device).expand_as(self.distances)
        first = torch.where(self.relevance & (self.distances == best), index, self.distances.shape[1]).min(dim=1, keepdim=True).values
        ahead = (self.distances < best) | ((self.distances == best) & (index < first))
        return ahead.sum(dim=1) + 1


