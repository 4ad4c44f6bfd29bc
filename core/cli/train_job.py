"""``simplug train CONFIG.toml``: read the data, build the model from registered names, score the
untrained encoder on the held-out split, train, score again, and write everything a user needs
to judge the run: the servable model, Lightning's CSV logs, a JSON report and a plot.

Each step is a function of a ``TrainingRun``, so ``simplug tune`` and tests can run the same
steps with other settings.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.loggers import CSVLogger

from simplug.cli.job_config import HEADLINE, JobConfig, load_job_config
from simplug.cli.plot import plot_history
from simplug.cli.tables import format_comparison
from simplug.data.loaders import GroupSimilarityDataLoader, PairsSimilarityDataLoader
from simplug.data.readers import read_samples
from simplug.errors import ConfigError
from simplug.evaluation.baselines import encoder_only, nearest_example
from simplug.evaluation.heldout import HeldOutScorer, retrieval_task
from simplug.training.fit import fit
from simplug.training.trainable import TrainableModel


@dataclass
class TrainingRun:
    """What one run of a job has read, built and measured so far."""

    job: JobConfig
    settings: dict[str, Any]
    out: str
    echo: Callable[[str], Any] = print
    train: list[Any] = field(default_factory=list)
    held_out: list[Any] = field(default_factory=list)
    model: Any = None
    scorer: HeldOutScorer | None = None
    headline: str = ""
    columns: dict[str, dict[str, float]] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    trained: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.job.data["kind"]


def start_run(config_path: str, output_dir: str | None = None, epochs: int | None = None,
              echo: Callable[[str], Any] = print) -> TrainingRun:
    """Read the job file and decide where the run writes."""
    job = load_job_config(config_path)
    settings = dict(job.train)
    if epochs is not None:
        settings["epochs"] = epochs
    out = output_dir or job.output.get("dir")
    if not out:
        raise ConfigError(f"{config_path}: say where to write the model: [output] dir = \"...\" or --out DIR")
    out = job.resolve_path(out) if output_dir is None else out
    pl.seed_everything(int(settings.get("seed", 0)), verbose=False)
    return TrainingRun(job=job, settings=settings, out=out, echo=echo)


def read_data(run: TrainingRun) -> None:
    """Training and held-out samples; group labels share one id table across both files."""
    group_ids: dict[Any, int] = {}
    fields = run.job.data.get("fields")
    run.train = read_samples(run.job.resolve_path(run.job.data["train"]), run.kind, fields, group_ids)
    run.held_out = read_samples(run.job.resolve_path(run.job.data["validation"]), run.kind, fields, group_ids)
    run.echo(f"data: {len(run.train)} training and {len(run.held_out)} held-out {run.kind} samples")


def build_model(run: TrainingRun) -> None:
    """The TrainableModel of ``[model]``, cached where its encoders are frozen."""
    job, settings = run.job, run.settings
    model = TrainableModel.from_config(job.model)
    cache = settings.get("cache", "auto")
    frozen = [key for key, encoder in model.model.encoders.items() if not encoder.trainable]
    if cache not in (None, False, "none") and "cache" not in job.model and frozen:
        # frozen encoders run once, before the first epoch; trainable ones stay uncached
        spec: dict[str, Any] = {"cache_type": "auto"}
        if isinstance(cache, str) and cache != "auto":
            spec = {"cache_type": cache, "mapping": {k: cache for k in frozen}}
        if settings.get("cache_dir"):
            # kept between runs: a second run (another learning rate, more epochs) skips the fill
            spec["save_dir"] = job.resolve_path(str(settings["cache_dir"]))
        model.use_cache(spec)
    elif settings.get("cache_dir"):
        raise ConfigError(
            f"{job.path}: [train] cache_dir is set but nothing is cached (cache = {cache!r}, or a [model] cache "
            "table, or no frozen encoder); remove cache_dir, or put save_dir in the [model] cache table"
        )
    if model.loss.target_kind != run.kind:
        raise ConfigError(
            f"{job.path}: [data] kind is {run.kind!r} but the loss {job.model.get('loss')!r} is a "
            f"{model.loss.target_kind[:-1]} loss; pick a {run.kind[:-1]} loss or change the data"
        )
    run.model = model


def score_baselines(run: TrainingRun) -> None:
    """The untrained encoder (and, for pairs, a nearest-training-example lookup) on the held-out task."""
    evaluation = run.job.evaluate
    run.headline = evaluation.get("headline", HEADLINE[run.kind])
    task = retrieval_task(run.kind, run.held_out, run.train, evaluation.get("candidates", "train"))
    run.scorer = HeldOutScorer(task, evaluation.get("distance", "cosine"), evaluation.get("ks", (1, 5, 10)),
                               int(evaluation.get("batch_size", 64)))
    untrained = run.scorer.score(run.model.model, heads=False)
    run.columns = {"untrained encoder": untrained}
    if run.kind == "pairs":
        # a lookup with no training: the answer of the most similar training question
        nearest = nearest_example(encoder_only(run.model.model), run.train, run.held_out,
                                  batch_size=run.scorer.batch_size, distance=evaluation.get("distance", "cosine"))
        run.columns["nearest example"] = {k: v for k, v in nearest.items() if k in untrained}
    if run.headline not in untrained:
        raise ConfigError(f"[evaluate] headline {run.headline!r} is not one of {', '.join(untrained)}")
    run.echo(f"untrained: {run.headline} {untrained[run.headline]:.3f} ({task.description})")


class EpochRecorder(pl.Callback):
    """Per epoch: mean training loss, validation loss, and the held-out headline metric."""

    def __init__(self, scorer: HeldOutScorer, headline: str) -> None:
        self.scorer = scorer
        self.headline = headline
        self.history: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
        row = {"epoch": trainer.current_epoch + 1}
        for key in ("loss_train_epoch", "loss_train", "loss_validation"):
            value = trainer.callback_metrics.get(key)
            if value is not None:
                row[key.replace("_epoch", "")] = float(value)
        row[self.headline] = self.scorer.score(module.model)[self.headline]
        self.history.append(row)
        module.log(f"heldout_{self.headline}", row[self.headline], prog_bar=True)


def loaders(kind: str, train: list[Any], held_out: list[Any], settings: Mapping[str, Any]) -> tuple[Any, Any]:
    """The training loader ([train] batch_size, m_per_group, ...) and the validation loader."""
    batch_size = int(settings.get("batch_size", 64))
    workers = int(settings.get("num_workers", 0))
    if kind == "pairs":
        return (PairsSimilarityDataLoader(train, batch_size=batch_size, shuffle=True, num_workers=workers),
                PairsSimilarityDataLoader(held_out, batch_size=batch_size, num_workers=workers))
    extra: dict[str, Any] = {"shuffle": True}
    if settings.get("m_per_group"):
        extra = {"m_per_group": int(settings["m_per_group"]), "seed": int(settings.get("seed", 0)),
                 "group_sampling": settings.get("group_sampling", "uniform")}
    return (GroupSimilarityDataLoader(train, batch_size=batch_size, num_workers=workers, **extra),
            GroupSimilarityDataLoader(held_out, batch_size=max(batch_size, min(len(held_out), 1024)), num_workers=workers))


def train_model(run: TrainingRun) -> None:
    """Lightning's fit, recording the held-out headline metric after every epoch."""
    settings = run.settings
    assert run.scorer is not None
    train_loader, val_loader = loaders(run.kind, run.train, run.held_out, settings)
    recorder = EpochRecorder(run.scorer, run.headline)
    callbacks: list[Any] = [recorder]
    if settings.get("early_stopping_patience"):
        callbacks.append(EarlyStopping(monitor=f"heldout_{run.headline}", mode="max",
                                       patience=int(settings["early_stopping_patience"])))
    fit(
        run.model,
        train_dataloader=train_loader,
        val_dataloader=val_loader if settings.get("validate", True) else None,
        max_epochs=int(settings.get("epochs", 10)),
        accelerator=settings.get("accelerator", "cpu"),
        default_root_dir=run.out,
        logger=CSVLogger(save_dir=run.out, name="logs"),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    run.history = recorder.history
    if run.model.cache_state is not None:
        for key, outcome in run.model.cache_state.outcomes.items():
            run.echo(f"cache of encoder {key!r}: {outcome}")


def write_outputs(run: TrainingRun) -> dict[str, Any]:
    """The servable model, ``report.json``, ``training.png`` and the before/after table."""
    assert run.scorer is not None
    task = run.scorer.task
    started = time.perf_counter()
    # the model card shows what it was trained on and how it scored before and after
    training = {**run.model.training_info(),
                "data": {"kind": run.kind, "training samples": len(run.train), "held-out samples": len(run.held_out)},
                "held_out": {"protocol": task.description, "before": run.columns["untrained encoder"], "after": run.trained}}
    model_dir = run.model.model.save(os.path.join(run.out, "model"), training=training)
    run.timings["save"] = time.perf_counter() - started
    cache_state = run.model.cache_state
    report = {
        "config": os.path.abspath(run.job.path),
        "data": {"kind": run.kind, "train": len(run.train), "held_out": len(run.held_out), "queries": len(task.queries),
                 "candidates": len(task.candidates), "protocol": task.description},
        "headline": run.headline,
        "untrained": run.columns["untrained encoder"],
        "baselines": run.columns,
        "trained": run.trained,
        "epochs": run.history,
        "seconds": {k: round(v, 3) for k, v in run.timings.items()},
        "cache": dict(cache_state.outcomes) if cache_state is not None else {},
        "model": os.path.abspath(model_dir),
    }
    plot = plot_history(run.history, run.headline, os.path.join(run.out, "training.png")) if run.history else None
    report["plot"] = plot and os.path.abspath(plot)
    with open(os.path.join(run.out, "report.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    run.echo("")
    run.echo(f"held-out metrics ({task.description}):")
    run.echo(format_comparison({**run.columns, "trained": run.trained}))
    run.echo("")
    run.echo(f"model: {report['model']}")
    run.echo(f"report: {os.path.abspath(os.path.join(run.out, 'report.json'))}" + (f", plot: {report['plot']}" if plot else ""))
    return report


def _timed(run: TrainingRun, name: str, step: Callable[[TrainingRun], Any]) -> Any:
    started = time.perf_counter()
    result = step(run)
    run.timings[name] = time.perf_counter() - started
    return result


def run_training(config_path: str, output_dir: str | None = None, epochs: int | None = None,
                 echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """Train from a TOML config; returns (and writes) the report."""
    run = start_run(config_path, output_dir, epochs, echo)
    started = time.perf_counter()
    read_data(run)
    build_model(run)
    run.timings["load"] = time.perf_counter() - started
    _timed(run, "evaluate_untrained", score_baselines)
    _timed(run, "train", train_model)
    assert run.scorer is not None
    run.trained = _timed(run, "evaluate_trained", lambda r: r.scorer.score(r.model.model))
    return write_outputs(run)
