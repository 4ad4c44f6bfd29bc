"""Evaluate a model on a whole data set of pairs or groups.

The objects are encoded in batches; retrieval metrics are then computed one block of
queries at a time, so at most one ``(block_size, N)`` distance matrix exists at once and a
data set of any size fits in memory as long as its embeddings do.
"""
from __future__ import annotations

import os
import random
from typing import Any, Mapping, Sequence

import torch
from simplug.components.metric import Metric, PairScoreMetric
from simplug.components.ranking import Relevance, score_embeddings
from simplug.data.samples import SimilarityGroupSample, SimilarityPairSample
from simplug.errors import ConfigError, DataError
from simplug.evaluation.retrieval import ObjectIndex
from simplug.model.similarity_model import SimilarityModel
from simplug.registry.building import build_component


class Sampler:
    """Chooses what to evaluate on and how to encode it.

    ``sample_size``: how many samples (pairs for ``PairSampler``, objects for
    ``GroupSampler``) to draw at random, ``None`` or -1 for all of them; ``seed`` makes the
    draw repeatable; ``encode_batch_size`` is the batch size for encoding.
    """

    sample_type: type = object

    def __init__(self, sample_size: int | None = None, seed: int = 0, encode_batch_size: int = 64):
        if sample_size == -1:
            sample_size = None
        if sample_size is not None and (isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1):
            raise ConfigError(f"sample_size must be a positive int, or None / -1 for all, got {sample_size!r}")
        if isinstance(encode_batch_size, bool) or not isinstance(encode_batch_size, int) or encode_batch_size < 1:
            raise ConfigError(f"encode_batch_size must be a positive int, got {encode_batch_size!r}")
        self.sample_size = sample_size
        self.seed = seed
        self.encode_batch_size = encode_batch_size

    def draw(self, dataset: Sequence[Any]) -> list[Any]:
        """The samples to evaluate on, checked to be of this sampler's type."""
        if not hasattr(dataset, "__len__") or len(dataset) == 0:
            raise DataError("cannot evaluate on an empty data set")
        indices = list(range(len(dataset)))
        if self.sample_size is not None and self.sample_size < len(indices):
            indices = sorted(random.Random(self.seed).sample(indices, self.sample_size))
        samples = [dataset[i] for i in indices]
        for i, sample in zip(indices, samples):
            if not isinstance(sample, self.sample_type):
                other = "PairSampler" if isinstance(sample, SimilarityPairSample) else "GroupSampler"
                raise DataError(
                    f"{type(self).__name__} evaluates {self.sample_type.__name__} data, but item {i} is a "
                    f"{type(sample).__name__}; use {other} for that data"
                )
        return samples

    def sample(self, dataset: Sequence[Any]) -> tuple[list[Any], dict[str, torch.Tensor]]:
        """Objects to encode and the targets that say which are relevant to which."""
        raise NotImplementedError


class GroupSampler(Sampler):
    """Objects of ``SimilarityGroupSample`` data; objects of one group are relevant to each other."""

    sample_type = SimilarityGroupSample

    def sample(self, dataset: Sequence[Any]) -> tuple[list[Any], dict[str, torch.Tensor]]:
        samples = self.draw(dataset)
        return [s.obj for s in samples], {"groups": torch.tensor([int(s.group) for s in samples])}


class PairSampler(Sampler):
    """Both sides of ``SimilarityPairSample`` data; the two sides of a positively scored pair
    are relevant to each other. With ``deduplicate`` (default) equal objects (the same text,
    or equal tensors, in several pairs) become one candidate, so a copy of the query is not
    counted as a wrong answer."""

    sample_type = SimilarityPairSample

    def __init__(self, sample_size: int | None = None, seed: int = 0, encode_batch_size: int = 64, deduplicate: bool = True):
        super().__init__(sample_size=sample_size, seed=seed, encode_batch_size=encode_batch_size)
        self.deduplicate = deduplicate

    def sample(self, dataset: Sequence[Any]) -> tuple[list[Any], dict[str, torch.Tensor]]:
        samples = self.draw(dataset)
        index = ObjectIndex()
        objects: list[Any] = index.objects

        def index_of(obj: Any) -> int:
            if self.deduplicate:
                return index.add(obj)
            objects.append(obj)
            return len(objects) - 1

        pairs = [(index_of(s.obj_a), index_of(s.obj_b)) for s in samples]
        targets = {
            "pairs": torch.tensor(pairs, dtype=torch.long).reshape(-1, 2),
            "labels": torch.tensor([float(s.score) for s in samples]),
        }
        return objects, targets


def default_sampler(dataset: Sequence[Any], encode_batch_size: int = 64) -> Sampler:
    if not hasattr(dataset, "__len__") or len(dataset) == 0:
        raise DataError("cannot evaluate on an empty data set")
    first = dataset[0]
    if isinstance(first, SimilarityPairSample):
        return PairSampler(encode_batch_size=encode_batch_size)
    if isinstance(first, SimilarityGroupSample):
        return GroupSampler(encode_batch_size=encode_batch_size)
    raise DataError(
        f"evaluation data must be SimilarityPairSample or SimilarityGroupSample items, got {type(first).__name__}"
    )


def resolve_model(model: Any, trust_local_code: bool = False) -> Any:
    """A SimilarityModel from a saved model path, a SimilarityModel or a TrainableModel."""
    if isinstance(model, (str, os.PathLike)):
        return SimilarityModel.load(os.fspath(model), trust_local_code=trust_local_code)
    inner = getattr(model, "model", model)
    if not isinstance(inner, SimilarityModel):
        raise ConfigError(
            f"evaluate takes a saved model path, a SimilarityModel or a TrainableModel, got {type(model).__name__}"
        )
    return inner


def _attached(spec: Any) -> tuple[str, Metric] | None:
    """``(name, metric)`` of an ``AttachedMetric`` (training's named metric), else None. Read by
    its attributes: evaluation sits below training and does not import it."""
    metric = getattr(spec, "metric", None)
    name = getattr(spec, "name", None)
    return (name, metric) if isinstance(metric, Metric) and isinstance(name, str) else None


class Evaluator:
    """Encodes a data set once and computes each metric over all of it.

    ``metrics``: a metric, a registered name or ``{"name": ..., **args}``, an
    ``AttachedMetric``, or a list of these, or a dict ``{result name: metric}``.
    ``sampler``: a ``PairSampler`` / ``GroupSampler`` (default: all of the data, chosen by
    its sample type). ``block_size``: queries per distance block.
    """

    def __init__(
        self,
        metrics: Any,
        sampler: Sampler | None = None,
        block_size: int = 1024,
        batch_size: int | None = None,
    ):
        if isinstance(metrics, Mapping) and "name" not in metrics:
            named = dict(metrics)
        else:
            if isinstance(metrics, (Metric, str, Mapping)) or _attached(metrics) is not None:
                metrics = [metrics]
            named = {}
            for spec in metrics:
                attached = _attached(spec)
                metric = attached[1] if attached else build_component("metrics", spec, Metric)
                named[attached[0] if attached else metric.name] = metric
        self.metrics: dict[str, Metric] = {}
        for key, spec in named.items():
            attached = _attached(spec)
            self.metrics[key] = attached[1] if attached else build_component("metrics", spec, Metric)
        if not self.metrics:
            raise ConfigError("the Evaluator needs at least one metric")
        if sampler is not None and not isinstance(sampler, Sampler):
            raise ConfigError(f"sampler must be a PairSampler or GroupSampler, got {type(sampler).__name__}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f"block_size must be a positive int, got {block_size!r}")
        self.sampler = sampler
        self.block_size = block_size
        self.batch_size = batch_size

    def encode(self, dataset: Sequence[Any], model: Any, trust_local_code: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sampler = self.sampler or default_sampler(dataset, encode_batch_size=self.batch_size or 64)
        objects, targets = sampler.sample(dataset)
        batch_size = self.batch_size or sampler.encode_batch_size
        embeddings = resolve_model(model, trust_local_code).encode(objects, batch_size=batch_size, to_numpy=False)
        if not torch.isfinite(embeddings).all():
            raise DataError("the model produced NaN or inf embeddings for the evaluation data")
        return embeddings, targets

    def evaluate(self, dataset: Sequence[Any], model: Any, trust_local_code: bool = False) -> dict[str, float]:
        """``{metric name: value}`` of ``model`` (a saved model path, SimilarityModel or
        TrainableModel) on ``dataset``; ``trust_local_code`` as in ``SimilarityModel.load``."""
        embeddings, targets = self.encode(dataset, model, trust_local_code)
        return self.compute(embeddings, targets)

    def compute(self, embeddings: torch.Tensor, targets: Mapping[str, Any]) -> dict[str, float]:
        """The metrics of given embeddings, retrieval metrics block by block."""
        results: dict[str, float] = {}
        retrieval = {k: m for k, m in self.metrics.items() if not isinstance(m, PairScoreMetric)}
        for key, metric in self.metrics.items():
            if isinstance(metric, PairScoreMetric):
                results[key] = self._pair_score(key, metric, embeddings, targets)
        if retrieval:
            results.update(self._retrieval(retrieval, embeddings, targets))
        return {k: results[k] for k in self.metrics}

    def _pair_score(self, key: str, metric: PairScoreMetric, embeddings: torch.Tensor, targets: Mapping[str, Any]) -> float:
        if "pairs" not in targets:
            raise DataError(f"{key} scores labelled pairs: evaluate it on pair data (PairSampler); for group data use retrieval metrics")
        pairs = torch.as_tensor(targets["pairs"]).reshape(-1, 2)
        labels = torch.as_tensor(targets["labels"]).reshape(-1)
        sims, positive = [], []
        for start in range(0, len(pairs), self.block_size):
            chunk = {"pairs": pairs[start : start + self.block_size], "labels": labels[start : start + self.block_size]}
            s, p = metric.pair_scores(embeddings, chunk)
            sims.append(s)
            positive.append(p)
        similarities, is_positive = torch.cat(sims).double(), torch.cat(positive)
        if is_positive.all() or not is_positive.any():
            raise DataError(f"{key} needs both positive and negative pairs, but all {len(is_positive)} pairs are "
                            f"{'positive' if is_positive.all() else 'negative'}; add pairs scored 0 (or above 0)")
        return float(metric.from_scores(similarities, is_positive))

    def _retrieval(self, metrics: dict[str, Metric], embeddings: torch.Tensor, targets: Mapping[str, Any]) -> dict[str, float]:
        relevance = Relevance(targets, embeddings.shape[0])
        if len(relevance.queries) == 0:
            raise DataError("no object of the evaluation data has a relevant object (a group of 2 or more, or a positive pair)")
        by_distance: dict[str, dict[str, Metric]] = {}
        for key, metric in metrics.items():
            name = metric.distance_metric_name if isinstance(metric.distance_metric_name, str) else repr(metric.distance)
            by_distance.setdefault(name, {})[key] = metric
        results: dict[str, float] = {}
        for group in by_distance.values():
            # one ranking of each block serves every metric of this distance
            results.update(score_embeddings(
                group, embeddings, embeddings, next(iter(group.values())).distance, relevance.block,
                queries=relevance.queries, exclude_self=True, query_groups=relevance.groups,
                candidate_groups=relevance.groups, block_size=self.block_size,
            ))
        return results
