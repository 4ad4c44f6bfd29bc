"""Held-out retrieval: new queries against a set of known candidates, scored by the ranking engine.

This is how a similarity model is used after training: the candidates (answers, categories'
examples, products) are indexed, and each new query retrieves from them. Scoring goes through
``simplug.components.ranking.score_blocks`` (one ranking per block of queries, ties broken by
candidate index, a query never retrieves itself), with registered metric plugins.

Metric names are the metric plugins' names: ``retrieval_precision@1``,
``retrieval_reciprocal_rank``, ``retrieval_r_precision``, ``recall@k``, ``map@r``,
``knn_accuracy@k``, ... The same names appear in ``simplug train``'s table, its
``report.json``, ``simplug evaluate`` and the ``Evaluator``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Sequence

import torch
from simplug.components.metric import Metric, PairScoreMetric
from simplug.components.ranking import score_embeddings
from simplug.errors import ConfigError, DataError
from simplug.registry.building import build_component

DEFAULT_KS = (1, 5, 10)

#: (split name, record position): where an object sits among the records a data loader makes
#: of a split (groups: one record per sample; pairs: every obj_a, then every obj_b)
Record = tuple[str, int]


# ---------------------------------------------------------------------------- object index
def object_key(obj: Any) -> Hashable:
    """A value key for an object: equal objects (texts, numbers, equal tensors or arrays) share it."""
    if isinstance(obj, torch.Tensor):
        return ("tensor", str(obj.dtype), tuple(obj.shape), obj.detach().cpu().contiguous().numpy().tobytes())
    if hasattr(obj, "__array__") and hasattr(obj, "tobytes") and hasattr(obj, "shape"):
        return ("array", str(getattr(obj, "dtype", "")), tuple(obj.shape), obj.tobytes())
    if isinstance(obj, (str, bytes, int, float, bool)) or obj is None:
        return (type(obj).__name__, obj)
    try:
        return ("json", json.dumps(obj, sort_keys=True))
    except (TypeError, ValueError):
        return ("repr", type(obj).__name__, repr(obj))


class ObjectIndex:
    """Distinct objects in order of first appearance: ``add(obj)`` gives an object's index,
    the same for every equal copy. The one builder of pair indices (held-out tasks, the
    Evaluator's ``PairSampler``)."""

    def __init__(self) -> None:
        self.objects: list[Any] = []
        self.first_seen: list[Any] = []  # what the caller said about each object's first copy
        self._index: dict[Hashable, int] = {}

    def add(self, obj: Any, origin: Any = None) -> int:
        key = object_key(obj)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.objects)
            self.objects.append(obj)
            self.first_seen.append(origin)
        return index

    def __len__(self) -> int:
        return len(self.objects)


# ---------------------------------------------------------------------------- the task
@dataclass
class RetrievalTask:
    """Queries, candidates, and which candidates are relevant to each query.

    ``relevant(query_indices)`` returns a bool ``(len(query_indices), n_candidates)`` tensor.
    ``exclude_self``: the queries are the candidates (query ``i`` is candidate ``i``), and a
    query's own entry is removed from its ranking. ``query_groups`` / ``candidate_groups``:
    group labels of group tasks (for kNN accuracy). ``query_records`` / ``candidate_records``:
    where each object sits among the records of the job's splits, so encoder outputs cached
    for training can be reused; ``None`` when unknown.
    """

    queries: list[Any]
    candidates: list[Any]
    relevant: Callable[[torch.Tensor], torch.Tensor]
    description: str
    exclude_self: bool = False
    query_groups: torch.Tensor | None = None
    candidate_groups: torch.Tensor | None = None
    query_records: list[Record] | None = None
    candidate_records: list[Record] | None = None

    @property
    def kind(self) -> str:
        return "groups" if self.candidate_groups is not None else "pairs"

    @classmethod
    def from_groups(cls, queries: Sequence[Any], candidates: Sequence[Any], exclude_self: bool = False,
                    query_split: str | None = None, candidate_split: str | None = None) -> "RetrievalTask":
        """Group samples: a candidate is relevant when it has the query's group.

        With ``exclude_self`` (queries and candidates are the same list), each query's own
        entry is not one of its candidates. ``query_split`` / ``candidate_split``: the names of
        the splits the samples are, in order (for reusing cached encoder outputs).
        """
        if exclude_self and len(queries) != len(candidates):
            raise DataError("exclude_self needs the queries and the candidates to be the same list")
        query_groups = torch.tensor([int(s.group) for s in queries], dtype=torch.long)
        candidate_groups = torch.tensor([int(s.group) for s in candidates], dtype=torch.long)

        def relevant(rows: torch.Tensor) -> torch.Tensor:
            return query_groups[rows, None] == candidate_groups[None, :]

        where = "the other held-out items" if exclude_self else "the training items"
        return cls([s.obj for s in queries], [s.obj for s in candidates], relevant,
                   f"each held-out item retrieves from {where}; relevant = same group",
                   exclude_self=exclude_self, query_groups=query_groups, candidate_groups=candidate_groups,
                   query_records=None if query_split is None else [(query_split, i) for i in range(len(queries))],
                   candidate_records=None if candidate_split is None else [(candidate_split, i) for i in range(len(candidates))])

    @classmethod
    def from_pairs(cls, pairs: Sequence[Any], extra_candidates: Sequence[Any] = (), pair_split: str | None = None,
                   extra_records: Sequence[Record] | None = None) -> "RetrievalTask":
        """Pair samples: each distinct ``obj_a`` is a query; its relevant candidates are the
        ``obj_b`` of its positive pairs (score > 0); the candidates are every distinct ``obj_b``
        (plus ``extra_candidates``, e.g. the training answers, as distractors).

        ``pair_split``: the name of the split ``pairs`` are; ``extra_records``: where each extra
        candidate sits (for reusing cached encoder outputs)."""
        n = len(pairs)
        candidate_index, query_index = ObjectIndex(), ObjectIndex()
        positives: list[set[int]] = []
        for i, pair in enumerate(pairs):
            b = candidate_index.add(pair.obj_b, None if pair_split is None else (pair_split, n + i))
            q = query_index.add(pair.obj_a, None if pair_split is None else (pair_split, i))
            if q == len(positives):
                positives.append(set())
            if float(pair.score) > 0:
                positives[q].add(b)
        for j, obj in enumerate(extra_candidates):
            candidate_index.add(obj, None if extra_records is None else extra_records[j])
        rows_of = [sorted(p) for p in positives]

        def relevant(rows: torch.Tensor) -> torch.Tensor:
            mask = torch.zeros(len(rows), len(candidate_index), dtype=torch.bool)
            for i, row in enumerate(rows.tolist()):
                mask[i, rows_of[row]] = True
            return mask

        known = pair_split is not None and (not extra_candidates or extra_records is not None)
        return cls(query_index.objects, candidate_index.objects, relevant,
                   "each distinct held-out obj_a retrieves from every distinct obj_b; relevant = its positive pairs",
                   query_records=query_index.first_seen if known else None,
                   candidate_records=candidate_index.first_seen if known else None)


# ---------------------------------------------------------------------------- metrics
def default_metric_specs(kind: str = "groups", ks: Sequence[int] = DEFAULT_KS) -> list[dict[str, Any]]:
    """The metrics ``simplug train`` and ``simplug evaluate`` report unless told otherwise."""
    specs: list[dict[str, Any]] = [{"name": "retrieval_precision", "k": 1}, {"name": "retrieval_reciprocal_rank"},
                                   {"name": "retrieval_r_precision"}]
    return specs + [{"name": "recall", "k": int(k)} for k in ks]


def build_metrics(specs: Any, distance: str | Any = "cosine") -> dict[str, Metric]:
    """``{result name: Metric}`` from a metric, a registered name or ``{"name": ..., **args}``, or a list of these.
    Specs without a distance get ``distance``. Only ranking metrics: pair-score metrics
    (``pair_auc``, ``pair_accuracy``) score labelled pairs, not rankings."""
    if isinstance(specs, (str, Mapping, Metric)):
        specs = [specs]
    built: dict[str, Metric] = {}
    for spec in specs:
        if isinstance(spec, str):
            spec = {"name": spec}
        if isinstance(spec, Mapping) and "distance_metric_name" not in spec:
            spec = {**spec, "distance_metric_name": distance}
        metric = build_component("metrics", spec, Metric)
        if isinstance(metric, PairScoreMetric):
            raise ConfigError(
                f"{metric.name} scores labelled pairs by their similarity, not rankings, so retrieval "
                "cannot report it; use a ranking metric (retrieval_precision, recall, ...), or the "
                "Evaluator with a PairSampler"
            )
        if metric.name in built:
            raise ConfigError(f"the metric {metric.name!r} is asked for twice")
        built[metric.name] = metric
    if not built:
        raise ConfigError("name at least one metric")
    return built


def score_task(task: RetrievalTask, query_embeddings: torch.Tensor, candidate_embeddings: torch.Tensor,
               metrics: Mapping[str, Metric], block_size: int = 1024) -> dict[str, float]:
    """The metrics of a task's encoded queries and candidates, through the ranking engine."""
    by_distance: dict[str, dict[str, Metric]] = {}
    for key, metric in metrics.items():
        by_distance.setdefault(repr(metric.distance), {})[key] = metric
    results: dict[str, float] = {}
    for group in by_distance.values():
        results.update(score_embeddings(
            group, query_embeddings, candidate_embeddings, next(iter(group.values())).distance, task.relevant,
            exclude_self=task.exclude_self, query_groups=task.query_groups, candidate_groups=task.candidate_groups,
            block_size=block_size,
        ))
    if all(math.isnan(v) for v in results.values()):
        raise DataError("no query has a relevant candidate, so retrieval cannot be scored; check the evaluation data")
    return {key: results[key] for key in metrics}


def evaluate_retrieval(model: Any, task: RetrievalTask, distance: str = "cosine", ks: Sequence[int] = DEFAULT_KS,
                       batch_size: int = 64, metrics: Mapping[str, Metric] | Sequence[Any] | None = None) -> dict[str, float]:
    """Encode the task's queries and candidates with ``model`` (a SimilarityModel) and score.
    ``metrics``: built metrics ``{name: Metric}`` or specs (default: :func:`default_metric_specs`
    with ``ks``, under ``distance``)."""
    if not isinstance(metrics, Mapping):
        metrics = build_metrics(metrics if metrics is not None else default_metric_specs(task.kind, ks), distance)
    query_side, candidate_side = task_sides(model)
    queries = model.encode(task.queries, batch_size=batch_size, to_numpy=False, side=query_side)
    if task.exclude_self and query_side == candidate_side:  # a set scored against itself is encoded once
        candidates = queries
    else:
        candidates = model.encode(task.candidates, batch_size=batch_size, to_numpy=False, side=candidate_side)
    return score_task(task, queries, candidates, metrics)


def task_sides(model: Any) -> tuple[str | None, str | None]:
    """The sides queries and candidates are encoded on: their own heads in a model with a head
    per side, the shared head otherwise."""
    return ("query", "document") if getattr(model, "sides", ()) else (None, None)
