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
from typing import Any, Callable, Mapping, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.loggers import CSVLogger
from simplug.cli.job_config import HEADLINE, JobConfig, load_job_config
from simplug.cli.plot import plot_history
from simplug.cli.tables import format_comparison
from simplug.data.loaders import GroupSimilarityDataLoader, PairsSimilarityDataLoader
from simplug.data.readers import read_samples
from simplug.errors import ConfigError, TrainingDivergedError, TrainingInterrupted
from simplug.evaluation.baselines import nearest_answer_scores, nearest_example
from simplug.evaluation.heldout import (
    HELD_OUT_SPLIT,
    TRAIN_SPLIT,
    HeldOutScorer,
    encoder_only,
    retrieval_task,
)
from simplug.evaluation.retrieval import Record
from simplug.registry.building import positive_int
from simplug.training.fit import fit
from simplug.training.trainable import TrainableModel
from simplug.training.tuning import best_epoch_selector


@dataclass
class TrainingRun:
    """What one run of a job has read, built and measured so far."""

    job: JobConfig
    settings: dict[str, Any]
    out: str
    echo: Callable[[str], Any] = print
    train: list[Any] = field(default_factory=list)
    held_out: list[Any] = field(default_factory=list)
    group_count: int = 0  # distinct group labels across both files (groups data)
    model: Any = None
    scorer: HeldOutScorer | None = None
    headline: str = ""
    columns: dict[str, dict[str, float]] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    trained: dict[str, float] = field(default_factory=dict)
    selected: dict[str, Any] = field(default_factory=dict)  # [train] select_best: the chosen epoch
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
        settings["epochs"] = positive_int(epochs, "--epochs")
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
    run.group_count = len(group_ids)
    run.echo(f"data: {len(run.train)} training and {len(run.held_out)} held-out {run.kind} samples")


def build_model(run: TrainingRun) -> None:
    """The TrainableModel of ``[model]``, cached where its encoders are frozen."""
    job, settings = run.job, run.settings
    model = TrainableModel.from_config(job.model, num_groups=run.group_count)
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
    """The untrained encoder (and, for pairs, a nearest-training-example lookup) on the held-out task.

    When every encoder is frozen and cached, the frozen encoders' outputs are the cache's rows:
    the scoring waits for the cache fill at the start of training (``score_untrained``) and
    reads them, so no text is encoded twice. Otherwise it runs now, before training changes
    a trainable encoder."""
    evaluation = run.job.evaluate
    run.headline = evaluation.get("headline", HEADLINE[run.kind])
    task = retrieval_task(run.kind, run.held_out, run.train, evaluation.get("candidates", "train"))
    run.scorer = HeldOutScorer(task, evaluation.get("distance", "cosine"), evaluation.get("ks", (1, 5, 10)),
                               int(evaluation.get("batch_size", 64)), metrics=evaluation.get("metrics"))
    if run.headline not in run.scorer.names:
        raise ConfigError(f"[evaluate] headline {run.headline!r} is not one of {', '.join(run.scorer.names)}")
    if not reads_cached_outputs(run.model):
        score_untrained(run)


def reads_cached_outputs(model: TrainableModel) -> bool:
    """Whether training caches every encoder's outputs (all frozen, and a cache configured)."""
    frozen = all(not e.trainable for e in model.model.encoders.values())
    return frozen and model.configure_caches() is not None


def score_untrained(run: TrainingRun, module: TrainableModel | None = None) -> None:
    """Score the encoders alone; ``module``: the model being trained, whose filled cache holds
    the frozen encoders' outputs of the task's objects."""
    assert run.scorer is not None
    started = time.perf_counter()
    task, scorer = run.scorer.task, run.scorer
    if module is not None and not scorer.has_encoder_outputs:
        queries = encoder_outputs_from_cache(module, task.query_records, split_samples(run))
        candidates = encoder_outputs_from_cache(module, task.candidate_records, split_samples(run))
        if queries is None:
            queries = module.model.encoder_outputs(task.queries, scorer.batch_size)
        if candidates is None:
            candidates = queries if task.exclude_self else module.model.encoder_outputs(task.candidates, scorer.batch_size)
        scorer.use_encoder_outputs(queries, candidates)
    untrained = scorer.score(run.model.model, heads=False)
    run.columns = {"untrained encoder": untrained}
    if run.kind == "pairs":
        # a lookup with no training: the answer of the most similar training question
        run.columns["nearest example"] = score_nearest_example(run, module)
    run.echo(f"untrained: {run.headline} {untrained[run.headline]:.3f} ({task.description})")
    run.timings["evaluate_untrained"] = time.perf_counter() - started


def score_nearest_example(run: TrainingRun, module: TrainableModel | None) -> dict[str, float]:
    """The nearest-training-question lookup of a pair job. With frozen encoders the untrained
    embeddings are the encoder outputs: the held-out queries' are the scorer's, the training
    questions' come from the cache when it holds them."""
    assert run.scorer is not None
    scorer = run.scorer
    if not scorer.has_encoder_outputs:  # a trainable encoder: encode with it as it is now
        return nearest_example(encoder_only(run.model.model), run.train, run.held_out, batch_size=scorer.batch_size,
                               distance=scorer.distance, metrics=list(scorer.metrics.values()))
    answered = [i for i, s in enumerate(run.train) if s.score > 0]
    train_queries = None if module is None else encoder_outputs_from_cache(module, [(TRAIN_SPLIT, i) for i in answered],
                                                                             split_samples(run))
    if train_queries is None:
        train_queries = run.model.model.encoder_outputs([run.train[i].obj_a for i in answered], scorer.batch_size)
    queries = scorer.encoder_outputs(run.model.model)[0]
    return nearest_answer_scores(scorer.task, [run.train[i] for i in answered], queries, train_queries, scorer.metrics)


def split_samples(run: TrainingRun) -> dict[str, list[Any]]:
    """The samples that the positions of each split of the held-out task refer to."""
    return {TRAIN_SPLIT: run.train, HELD_OUT_SPLIT: run.held_out}


def encoder_outputs_from_cache(model: TrainableModel, records: list[Record] | None,
                               datasets: Mapping[str, Sequence[Any]]) -> torch.Tensor | None:
    """The frozen encoders' outputs of ``records`` (split, record position), read from the
    model's filled training cache; None when the cache does not hold them all. ``datasets``:
    the samples each split's positions refer to; a split the cache holds for other samples
    (e.g. a share carved from the training data) is not read."""
    state = model.cache_state
    if records is None or state is None or not state.filled:
        return None
    keys = list(model.model.encoders)
    splits_used = {split for split, _ in records}
    if any(key not in state.backends for key in keys) or any(
            split not in state.sources or state.sources[split].dataset is not datasets.get(split) for split in splits_used):
        return None
    splits = [split for split, _ in records]
    positions = torch.tensor([position for _, position in records], dtype=torch.long)
    outputs = torch.empty(len(records), sum(model.model.encoders[key].embedding_size for key in keys))
    for split in dict.fromkeys(splits):
        where = torch.tensor([name == split for name in splits])
        source = state.sources[split]
        outputs[where] = torch.cat([state.gather(key, source, positions[where]).float().cpu() for key in keys], dim=1)
    return outputs


class EpochRecorder(pl.Callback):
    """Per epoch: mean training loss, validation loss, and the held-out headline metric.
    ``at_start(module)`` runs once the training cache is filled, before the first epoch."""

    def __init__(self, scorer: HeldOutScorer, headline: str,
                 at_start: Callable[[Any], None] | None = None) -> None:
        self.scorer = scorer
        self.headline = headline
        self.at_start = at_start
        self.history: list[dict[str, float]] = []

    def on_train_start(self, trainer: Any, module: Any) -> None:
        if self.at_start is not None:
            self.at_start(module)

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
    train_samples, selector = run.train, None
    if settings.get("select_best"):
        # keep the epoch that scores best on a split carved from the training data (never the held-out one)
        train_samples, selector = best_epoch_selector(
            run.kind, run.train, run.model, settings["select_best"], run.headline,
            settings.get("validation_share", 0.2), int(settings.get("seed", 0)), run.job.evaluate)
    train_loader, val_loader = loaders(run.kind, train_samples, run.held_out, settings)
    deferred = not run.columns  # the untrained encoder is scored from the filled cache
    recorder = EpochRecorder(run.scorer, run.headline, (lambda module: score_untrained(run, module)) if deferred else None)
    callbacks: list[Any] = [recorder] + ([selector] if selector is not None else [])
    if settings.get("early_stopping_patience"):
        callbacks.append(EarlyStopping(monitor=f"heldout_{run.headline}", mode="max",
                                       patience=int(settings["early_stopping_patience"])))
    try:
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
    except TrainingDivergedError as exc:
        raise TrainingDivergedError(f"{exc} (the learning rate is [model] optimizer.lr in {run.job.path})") from None
    finally:
        run.history = recorder.history
    if selector is not None and selector.best is not None:
        run.selected = {"epoch": selector.best.epoch, "validation": selector.best.metrics,
                        "meets_constraints": selector.best.feasible, "validation_samples": len(run.train) - len(train_samples)}
        run.echo(selector.summary())
    if run.model.cache_state is not None:
        for key, outcome in run.model.cache_state.outcomes.items():
            run.echo(f"cache of encoder {key!r}: {outcome}")


def write_outputs(run: TrainingRun) -> dict[str, Any]:
    """The servable model, ``report.json``, ``training.png`` and the before/after table."""
    assert run.scorer is not None
    task = run.scorer.task
    started = time.perf_counter()
    # `simplug evaluate` reads the data as it was trained on unless told otherwise; the model
    # card shows what it was trained on and how it scored before and after
    trained_on = {"data": {"kind": run.kind, "fields": dict(run.job.data.get("fields") or {}),
                           "training samples": len(run.train), "held-out samples": len(run.held_out)},
                  "evaluate": {"distance": run.scorer.distance, "metrics": run.scorer.names},
                  "held_out": {"protocol": task.description, "before": run.columns["untrained encoder"],
                               "after": run.trained}}
    model_dir = run.model.save_servable(os.path.join(run.out, "model"), training=trained_on)
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
        **({"selected": run.selected} if run.selected else {}),
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


def write_stopped_report(run: TrainingRun, status: str, error: str, model_dir: str | None) -> str:
    """``report.json`` of a run that did not finish: why, the epochs it completed, and the model
    saved (the last completed epoch's) or None."""
    os.makedirs(run.out, exist_ok=True)
    path = os.path.join(run.out, "report.json")
    report = {
        "config": os.path.abspath(run.job.path),
        "status": status,
        "error": error,
        "headline": run.headline,
        "untrained": run.columns.get("untrained encoder", {}),
        "epochs": run.history,
        "epochs_completed": run.model.last_completed_epoch if run.model is not None else 0,
        "seconds": {k: round(v, 3) for k, v in run.timings.items()},
        "model": model_dir and os.path.abspath(model_dir),
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    return os.path.abspath(path)


def save_interrupted(run: TrainingRun, interrupted: TrainingInterrupted) -> TrainingInterrupted:
    """After Ctrl-C during training: save the last completed epoch's model; the error to raise
    says where (or that no epoch completed, so nothing was saved)."""
    epochs = run.model.restore_last_completed_epoch()
    if not epochs:
        report = write_stopped_report(run, "interrupted", str(interrupted), None)
        return TrainingInterrupted(f"training interrupted (Ctrl-C) before the first epoch completed; no model was "
                                   f"saved (report: {report})", 0)
    model_dir = run.model.save_servable(os.path.join(run.out, "model"))
    report = write_stopped_report(run, "interrupted", str(interrupted), model_dir)
    return TrainingInterrupted(
        f"training interrupted (Ctrl-C) during epoch {epochs + 1}: saved the model of epoch {epochs}, the last "
        f"completed one, to {os.path.abspath(model_dir)} (report: {report})", epochs
    )


def run_training(config_path: str, output_dir: str | None = None, epochs: int | None = None,
                 echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """Train from a TOML config; returns (and writes) the report.

    Raises ``TrainingInterrupted`` on Ctrl-C (having saved the last completed epoch's model, if
    any) and ``TrainingDivergedError`` when training diverges (saving no model); both write a
    ``report.json`` with the epochs that ran."""
    run = start_run(config_path, output_dir, epochs, echo)
    started = time.perf_counter()
    try:
        read_data(run)
        build_model(run)
        run.timings["load"] = time.perf_counter() - started
        score_baselines(run)  # times its own scoring (which may wait for the cache fill)
    except KeyboardInterrupt:
        raise TrainingInterrupted("interrupted (Ctrl-C) before training started; nothing was saved") from None
    try:
        _timed(run, "train", train_model)
    except TrainingInterrupted as exc:
        raise save_interrupted(run, exc) from None
    except TrainingDivergedError as exc:
        report = write_stopped_report(run, "diverged", str(exc), None)
        raise TrainingDivergedError(f"{exc}; report: {report}") from None
    assert run.scorer is not None
    run.trained = _timed(run, "evaluate_trained", lambda r: r.scorer.score(r.model.model))
    return write_outputs(run)
