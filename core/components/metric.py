"""Metric bases: retrieval and pair-scoring quality of a batch or a whole data set.

Retrieval metrics are computed one block of queries at a time. A ``QueryBlock`` holds the
distances from a few queries to every candidate (one ``(block, N)`` matrix) and the
relevance of each candidate; a metric turns it into one value per query. The mean over all
queries is the metric. ``Metric.compute`` (one batch, e.g. during validation) is the same
computation with the whole batch as a single block, so a data set evaluated block by block
gives exactly what the full matrix would.

Rankings are deterministic: candidates are ordered by distance and, among equal distances,
by their index in the data set (a stable sort). A query never retrieves itself.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from simplug.components.distance import Distance, resolve_distance
from simplug.components.ranking import QueryBlock, Relevance, score_embeddings
from simplug.errors import ConfigError, DataError
from simplug.registry.building import build_component


# ---------------------------------------------------------------------------- metrics
class Metric:
    """Computes one number from embeddings and the targets of the batch or data set.

    Retrieval metrics implement ``per_query(block)`` (one value per query of a
    ``QueryBlock``) and ``depth(block)`` (how many nearest candidates they look at); the
    ranking engine (``simplug.components.ranking.score_blocks``) ranks each block once for all
    metrics and averages. Queries with no relevant object are skipped in the mean.
    """

    #: "pairs", "groups" or "any"
    target_kind = "any"

    def __init__(self, distance_metric_name: str = "cosine"):
        self.distance_metric_name = distance_metric_name
        self.distance: Distance = resolve_distance(distance_metric_name)

    @property
    def name(self) -> str:
        return type(self).__name__

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric_name": self.distance_metric_name}

    def depth(self, block: QueryBlock) -> int:
        return 0

    def per_query(self, block: QueryBlock) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, embeddings: torch.Tensor, targets: Mapping[str, Any]) -> torch.Tensor:
        """Mean over the queries that have at least one relevant object (NaN when none has)."""
        embeddings = embeddings.detach()
        n = embeddings.shape[0]
        relevance = Relevance(targets, n)
        value = score_embeddings(
            {self.name: self}, embeddings, embeddings, self.distance, relevance.block,
            queries=relevance.queries, exclude_self=True, query_groups=relevance.groups,
            candidate_groups=relevance.groups, block_size=max(n, 1),  # the whole batch is one block
        )[self.name]
        return torch.tensor(value).float()


def check_k(metric_name: str, k: int, block: QueryBlock) -> int:
    if k > block.n_candidates:
        raise DataError(
            f"{metric_name} needs at least k={k} candidates per query but there are only "
            f"{block.n_candidates}{' (every object but the query itself)' if block.queries is not None else ''}: "
            "lower k or evaluate on more objects"
        )
    return k


class PairMetric(Metric):
    target_kind = "pairs"


class GroupMetric(Metric):
    target_kind = "groups"


class PairScoreMetric(Metric):
    """A metric of the similarity scores of labelled pairs (not of rankings).

    A pair is positive when its score (label) is above ``positive_above``. On group targets
    every two objects of the batch form a pair, positive when they share a group.
    Subclasses implement ``from_scores(similarities, positive)``.
    """

    target_kind = "pairs"

    def __init__(self, distance_metric_name: str = "cosine", positive_above: float = 0.0):
        super().__init__(distance_metric_name=distance_metric_name)
        self.positive_above = float(positive_above)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "positive_above": self.positive_above}

    def from_scores(self, similarities: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pair_scores(self, embeddings: torch.Tensor, targets: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if "pairs" in targets:
            pairs = torch.as_tensor(targets["pairs"], device=embeddings.device).long().reshape(-1, 2)
            labels = torch.as_tensor(targets["labels"], device=embeddings.device).reshape(-1)
            a, b = pairs[:, 0], pairs[:, 1]
            positive = labels > self.positive_above
        elif "groups" in targets:
            groups = torch.as_tensor(targets["groups"], device=embeddings.device)
            a, b = torch.triu_indices(len(groups), len(groups), offset=1, device=embeddings.device)
            positive = groups[a] == groups[b]
        else:
            raise DataError(f"metric targets need 'groups' or 'pairs', got keys {sorted(targets)}")
        return self.distance.similarity(embeddings[a], embeddings[b]), positive

    def compute(self, embeddings: torch.Tensor, targets: Mapping[str, Any]) -> torch.Tensor:
        """NaN when the batch lacks positive or negative pairs."""
        similarities, positive = self.pair_scores(embeddings.detach(), targets)
        if positive.all() or not positive.any():
            return torch.tensor(float("nan"))
        return self.from_scores(similarities.double(), positive).float()


class AttachedMetric:
    """A metric logged during training as ``{name}_{stage}``, e.g. ``rr_validation``.

    ``stages`` says where it is computed ("train", "validation", "test"); ``prog_bar``,
    ``on_step`` and ``on_epoch`` are passed to Lightning's ``log``. Return these from
    ``TrainableModel.configure_metrics`` (a bare ``Metric`` is logged under its own name on
    validation and test).
    """

    STAGES = ("train", "validation", "test")

    def __init__(
        self,
        name: str,
        metric: Metric | str | Mapping[str, Any],
        stages: str | tuple[str, ...] | list[str] = ("validation", "test"),
        prog_bar: bool = False,
        on_step: bool | None = None,
        on_epoch: bool = True,
    ):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"an AttachedMetric needs a non-empty name, got {name!r}")
        stages = (stages,) if isinstance(stages, str) else tuple(stages)
        wrong = [s for s in stages if s not in self.STAGES]
        if wrong or not stages:
            raise ConfigError(f"AttachedMetric stages must be some of {self.STAGES}, got {stages!r}")
        self.name = name
        self.metric: Metric = build_component("metrics", metric, Metric)
        self.stages = stages
        self.prog_bar = bool(prog_bar)
        self.on_step = on_step
        self.on_epoch = bool(on_epoch)

    def log_options(self, stage: str) -> dict[str, Any]:
        on_step = self.on_step if self.on_step is not None else stage == "train"
        return {"prog_bar": self.prog_bar, "on_step": on_step, "on_epoch": self.on_epoch}

    def compute(self, embeddings: torch.Tensor, targets: Mapping[str, Any]) -> torch.Tensor:
        return self.metric.compute(embeddings, targets)

    def __repr__(self) -> str:
        return f"AttachedMetric({self.name!r}, {self.metric.name}, stages={self.stages})"


def attach_metrics(metrics: Any) -> list[AttachedMetric]:
    """What ``configure_metrics`` returned, as AttachedMetrics: a bare Metric is logged under
    its own name on validation and test, in the progress bar."""
    if metrics is None:
        return []
    if isinstance(metrics, (Metric, AttachedMetric)):
        metrics = [metrics]
    attached = []
    for metric in metrics:
        if isinstance(metric, AttachedMetric):
            attached.append(metric)
        elif isinstance(metric, Metric):
            attached.append(AttachedMetric(metric.name, metric, prog_bar=True))
        else:
            raise ConfigError(
                f"configure_metrics must return simplug Metrics or AttachedMetrics, got {type(metric).__name__}"
            )
    names = [a.name for a in attached]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"two metrics would be logged under the same name {', '.join(map(repr, repeated))}; give "
            "one of them another name with AttachedMetric(name, metric) or a 'log': {'name': ...} entry"
        )
    return attached


def attached_metric_from_config(spec: Any) -> Metric | AttachedMetric:
    """A metric config, optionally with logging options under ``log``, e.g.
    ``{"name": "recall", "k": 5, "log": {"name": "r5", "stages": ["train", "validation"]}}``."""
    if isinstance(spec, Mapping) and "log" in spec:
        options = spec["log"]
        if not isinstance(options, Mapping):
            raise ConfigError(f"a metric's 'log' entry is a table of AttachedMetric options, got {options!r}")
        metric = build_component("metrics", {k: v for k, v in spec.items() if k != "log"}, Metric)
        options = dict(options)
        unknown = sorted(set(options) - {"name", "stages", "prog_bar", "on_step", "on_epoch"})
        if unknown:
            raise ConfigError(
                f"unknown metric 'log' option(s) {unknown}; the options are: name, stages, prog_bar, on_step, on_epoch"
            )
        return AttachedMetric(options.pop("name", metric.name), metric, **options)
    return build_component("metrics", spec, Metric)
