"""``simplug train CONFIG.toml`` and ``simplug evaluate MODEL DATA``: config-driven jobs.

A job reads JSONL/CSV data, builds a TrainableModel from registered component names, scores
the untrained model on the held-out split, trains, scores again, and writes everything a user
needs to judge the run: the servable model, Lightning's CSV logs, a JSON report and a plot.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from simplug.errors import ConfigError, DataError

SECTIONS = {
    "data": {"kind", "train", "validation", "fields"},
    "model": None,  # passed to TrainableModel.from_config, which checks its own keys
    "train": {"epochs", "batch_size", "seed", "m_per_group", "group_sampling", "cache", "cache_dir", "num_workers",
              "validate", "early_stopping_patience", "accelerator"},
    "evaluate": {"distance", "ks", "candidates", "batch_size", "headline"},
    "output": {"dir"},
}
HEADLINE = {"groups": "r_precision", "pairs": "precision@1"}


@dataclass
class JobConfig:
    path: str
    data: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)

    def resolve_path(self, value: str) -> str:
        return value if os.path.isabs(value) else os.path.join(os.path.dirname(os.path.abspath(self.path)), value)


def load_job_config(path: str) -> JobConfig:
    import tomllib

    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; save the config as UTF-8") from None
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; the sections are: {', '.join(SECTIONS)}")
    for name in ("data", "model"):
        if name not in raw:
            raise ConfigError(f"{path}: the config needs a [{name}] section")
    for name, allowed in SECTIONS.items():
        section = raw.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        if allowed is not None:
            extra = sorted(set(section) - allowed)
            if extra:
                raise ConfigError(f"{path}: unknown key(s) {', '.join(extra)} in [{name}]; the keys are: {', '.join(sorted(allowed))}")
    data = raw["data"]
    if data.get("kind") not in ("pairs", "groups"):
        raise ConfigError(f"{path}: [data] kind must be \"pairs\" or \"groups\", got {data.get('kind')!r}")
    for split in ("train", "validation"):
        if not isinstance(data.get(split), str):
            raise ConfigError(f"{path}: [data] needs {split} = \"<file.jsonl or .csv>\"")
    return JobConfig(path, data, raw["model"], raw.get("train", {}), raw.get("evaluate", {}), raw.get("output", {}))


# ---------------------------------------------------------------------------------- evaluation
def retrieval_task(kind: str, held_out: Sequence[Any], train: Sequence[Any], candidates: str = "train") -> Any:
    """Held-out queries against known candidates (see ``simplug.evaluation.retrieval``)."""
    from simplug.evaluation.retrieval import RetrievalTask

    if kind == "groups":
        if candidates == "train":
            return RetrievalTask.from_groups(held_out, train)
        if candidates == "self":
            return RetrievalTask.from_groups(held_out, held_out, exclude_self=True)
        raise ConfigError(f"[evaluate] candidates must be \"train\" or \"self\" for group data, got {candidates!r}")
    return RetrievalTask.from_pairs(held_out, extra_candidates=[p.obj_b for p in train])


class HeldOutScorer:
    """Scores a model on a retrieval task. When every encoder is frozen, the encoders run once
    and each later score only re-applies the head: scoring every epoch costs almost nothing."""

    def __init__(self, task: Any, distance: str = "cosine", ks: Sequence[int] = (1, 5, 10), batch_size: int = 64):
        from simplug.components.distance import resolve_distance

        self.task = task
        self.distance = distance
        self.similarity = resolve_distance(distance).similarity_matrix
        self.ks = tuple(ks)
        self.batch_size = batch_size
        self._encoded: tuple[Any, Any] | None = None

    def score(self, model: Any, heads: bool = True) -> dict[str, float]:
        """Metrics of ``model``; with ``heads=False``, of its encoders alone (the untrained-encoder
        baseline: what retrieval gives before any training)."""
        import torch

        from simplug.evaluation.retrieval import evaluate_retrieval, score_rankings, task_sides

        frozen = all(not e.trainable for e in model.encoders.values())
        if not heads and not frozen:
            from simplug.evaluation.baselines import encoder_only

            return self.score(encoder_only(model))
        if frozen:
            if self._encoded is None:
                self._encoded = (
                    model.encoder_outputs(self.task.queries, self.batch_size),
                    model.encoder_outputs(self.task.candidates, self.batch_size),
                )
            was_training = model.training
            model.eval()
            with torch.inference_mode():
                # a model with a head per side encodes queries and candidates with their own heads
                if heads:
                    queries, candidates = (model.apply_heads(x, side) for x, side in zip(self._encoded, task_sides(model)))
                else:
                    queries, candidates = self._encoded
            model.train(was_training)
            return score_rankings(queries, candidates, self.task.relevant, self.similarity, ks=self.ks)
        return evaluate_retrieval(model, self.task, self.distance, self.ks, self.batch_size)


def format_comparison(columns: Mapping[str, Mapping[str, float]]) -> str:
    """A metrics table, one column per model, plus the change of the last against the first."""
    names = list(columns)
    metrics = list(next(iter(columns.values())))
    header = ["metric", *names] + (["change"] if len(names) > 1 else [])
    rows = []
    for metric in metrics:
        values = [columns[n].get(metric) for n in names]
        row = [metric, *("-" if v is None else f"{v:.3f}" for v in values)]
        if len(names) > 1 and values[0] is not None and values[-1] is not None:
            row.append(f"{values[-1] - values[0]:+.3f}")
        rows.append(row)
    return text_table(header, rows)


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns under a dashed rule (the command line's tables)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- training
def _epoch_recorder(scorer: HeldOutScorer, headline: str) -> Any:
    import pytorch_lightning as pl

    class EpochRecorder(pl.Callback):
        """Per epoch: mean training loss, validation loss, and the held-out headline metric."""

        def __init__(self) -> None:
            self.history: list[dict[str, float]] = []

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            row = {"epoch": trainer.current_epoch + 1}
            for key in ("loss_train_epoch", "loss_train", "loss_validation"):
                value = trainer.callback_metrics.get(key)
                if value is not None:
                    row[key.replace("_epoch", "")] = float(value)
            row[headline] = scorer.score(module.model)[headline]
            self.history.append(row)
            module.log(f"heldout_{headline}", row[headline], prog_bar=True)

    return EpochRecorder()


def _plot(history: list[dict[str, float]], headline: str, path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss_train", "loss_validation"):
        if any(key in row for row in history):
            ax_loss.plot([r["epoch"] for r in history if key in r], [r[key] for r in history if key in r], label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_metric.plot(epochs, [row[headline] for row in history], color="tab:green")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel(f"held-out {headline}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _loaders(kind: str, train: list[Any], held_out: list[Any], settings: Mapping[str, Any]) -> tuple[Any, Any]:
    from simplug.data.loaders import GroupSimilarityDataLoader, PairsSimilarityDataLoader

    batch_size = int(settings.get("batch_size", 64))
    workers = int(settings.get("num_workers", 0))
    if kind == "pairs":
        return (PairsSimilarityDataLoader(train, batch_size=batch_size, shuffle=True, num_workers=workers),
                PairsSimilarityDataLoader(held_out, batch_size=batch_size, num_workers=workers))
    extra: dict[str, Any] = {}
    if settings.get("m_per_group"):
        extra = {"m_per_group": int(settings["m_per_group"]), "seed": int(settings.get("seed", 0)),
                 "group_sampling": settings.get("group_sampling", "uniform")}
    else:
        extra = {"shuffle": True}
    return (GroupSimilarityDataLoader(train, batch_size=batch_size, num_workers=workers, **extra),
            GroupSimilarityDataLoader(held_out, batch_size=max(batch_size, min(len(held_out), 1024)), num_workers=workers))


def run_training(config_path: str, output_dir: str | None = None, epochs: int | None = None,
                 echo: Any = print) -> dict[str, Any]:
    """Train from a TOML config; returns (and writes) the report."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping
    from pytorch_lightning.loggers import CSVLogger

    from simplug.data.readers import read_samples
    from simplug.training.fit import fit
    from simplug.training.trainable import TrainableModel

    job = load_job_config(config_path)
    settings = dict(job.train)
    if epochs is not None:
        settings["epochs"] = epochs
    out = output_dir or job.output.get("dir")
    if not out:
        raise ConfigError(f"{config_path}: say where to write the model: [output] dir = \"...\" or --out DIR")
    out = job.resolve_path(out) if output_dir is None else out
    kind = job.data["kind"]
    seed = int(settings.get("seed", 0))
    pl.seed_everything(seed, verbose=False)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    group_ids: dict[Any, int] = {}
    train = read_samples(job.resolve_path(job.data["train"]), kind, job.data.get("fields"), group_ids)
    held_out = read_samples(job.resolve_path(job.data["validation"]), kind, job.data.get("fields"), group_ids)
    echo(f"data: {len(train)} training and {len(held_out)} held-out {kind} samples")

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
            f"{config_path}: [train] cache_dir is set but nothing is cached (cache = {cache!r}, or a [model] cache "
            "table, or no frozen encoder); remove cache_dir, or put save_dir in the [model] cache table"
        )
    if model.loss.target_kind != kind:
        raise ConfigError(
            f"{config_path}: [data] kind is {kind!r} but the loss {job.model.get('loss')!r} is a "
            f"{model.loss.target_kind[:-1]} loss; pick a {kind[:-1]} loss or change the data"
        )
    evaluation = job.evaluate
    headline = evaluation.get("headline", HEADLINE[kind])
    task = retrieval_task(kind, held_out, train, evaluation.get("candidates", "train"))
    scorer = HeldOutScorer(task, evaluation.get("distance", "cosine"), evaluation.get("ks", (1, 5, 10)),
                           int(evaluation.get("batch_size", 64)))
    timings["load"] = time.perf_counter() - started

    started = time.perf_counter()
    columns = {"untrained encoder": scorer.score(model.model, heads=False)}
    if kind == "pairs":
        # a lookup with no training: the answer of the most similar training question
        from simplug.evaluation.baselines import encoder_only, nearest_example

        nearest = nearest_example(encoder_only(model.model), train, held_out, batch_size=scorer.batch_size,
                                  distance=evaluation.get("distance", "cosine"))
        columns["nearest example"] = {k: v for k, v in nearest.items() if k in columns["untrained encoder"]}
    before = columns["untrained encoder"]
    if headline not in before:
        raise ConfigError(f"[evaluate] headline {headline!r} is not one of {', '.join(before)}")
    timings["evaluate_untrained"] = time.perf_counter() - started
    echo(f"untrained: {headline} {before[headline]:.3f} ({task.description})")

    train_loader, val_loader = _loaders(kind, train, held_out, settings)
    recorder = _epoch_recorder(scorer, headline)
    callbacks: list[Any] = [recorder]
    if settings.get("early_stopping_patience"):
        callbacks.append(EarlyStopping(monitor=f"heldout_{headline}", mode="max",
                                       patience=int(settings["early_stopping_patience"])))
    started = time.perf_counter()
    fit(
        model,
        train_dataloader=train_loader,
        val_dataloader=val_loader if settings.get("validate", True) else None,
        max_epochs=int(settings.get("epochs", 10)),
        accelerator=settings.get("accelerator", "cpu"),
        default_root_dir=out,
        logger=CSVLogger(save_dir=out, name="logs"),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    timings["train"] = time.perf_counter() - started
    if model.cache_state is not None:
        for key, outcome in model.cache_state.outcomes.items():
            echo(f"cache of encoder {key!r}: {outcome}")

    started = time.perf_counter()
    after = scorer.score(model.model)
    timings["evaluate_trained"] = time.perf_counter() - started
    started = time.perf_counter()
    model_dir = model.save_servable(os.path.join(out, "model"))
    timings["save"] = time.perf_counter() - started

    report = {
        "config": os.path.abspath(config_path),
        "data": {"kind": kind, "train": len(train), "held_out": len(held_out), "queries": len(task.queries),
                 "candidates": len(task.candidates), "protocol": task.description},
        "headline": headline,
        "untrained": before,
        "baselines": columns,
        "trained": after,
        "epochs": recorder.history,
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "cache": dict(model.cache_state.outcomes) if model.cache_state is not None else {},
        "model": os.path.abspath(model_dir),
    }
    plot = _plot(recorder.history, headline, os.path.join(out, "training.png")) if recorder.history else None
    report["plot"] = plot and os.path.abspath(plot)
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    echo("")
    echo(f"held-out metrics ({task.description}):")
    echo(format_comparison({**columns, "trained": after}))
    echo("")
    echo(f"model: {report['model']}")
    echo(f"report: {os.path.abspath(os.path.join(out, 'report.json'))}" + (f", plot: {report['plot']}" if plot else ""))
    return report


def run_evaluation(model_path: str, data_path: str, kind: str | None = None, fields: Mapping[str, str] | None = None,
                   candidates_path: str | None = None, distance: str = "cosine", ks: Sequence[int] = (1, 5, 10),
                   batch_size: int = 64, trust_local_code: bool = False) -> dict[str, float]:
    """Metrics of a saved model on a data file (groups: each item against the others, or against
    ``candidates_path``'s items; pairs: each obj_a against every obj_b)."""
    from simplug.data.readers import read_samples
    from simplug.model.similarity_model import SimilarityModel

    model = SimilarityModel.load(model_path, trust_local_code=trust_local_code)
    kind = kind or _guess_kind(data_path)
    group_ids: dict[Any, int] = {}
    samples = read_samples(data_path, kind, fields, group_ids)
    if kind == "groups":
        if candidates_path:
            known = read_samples(candidates_path, kind, fields, group_ids)
            task = retrieval_task(kind, samples, known, "train")
        else:
            task = retrieval_task(kind, samples, samples, "self")
    else:
        extra = read_samples(candidates_path, kind, fields) if candidates_path else []
        task = retrieval_task(kind, samples, extra)
    return HeldOutScorer(task, distance, ks, batch_size).score(model)


def _guess_kind(path: str) -> str:
    from simplug.data.readers import _rows

    for _, row in _rows(path):
        if "obj_a" in row or "obj_b" in row:
            return "pairs"
        if "obj" in row or "group" in row:
            return "groups"
        break
    raise DataError(f"cannot tell whether {path} holds pairs or groups from its fields; pass --kind pairs or --kind groups")
