"""Metrics logged during training: ``AttachedMetric`` and what ``configure_metrics`` returns."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from simplug.components.metric import Metric
from simplug.errors import ConfigError
from simplug.registry.building import build_component


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
