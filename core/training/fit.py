"""fit / evaluate / trainer_defaults, also reachable as ``Quaterion.fit`` etc."""
from __future__ import annotations

import logging
import signal
import threading
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import pytorch_lightning as pl
from simplug.data.loaders import GroupBalancedBatchSampler, SimilarityDataLoader
from simplug.errors import DataError, TrainingInterrupted
from simplug.training.lightning_speed import NoProfiler
from simplug.training.trainable import TrainableModel

# Lightning messages that say nothing actionable for similarity training on a CPU
_QUIET_WARNINGS = (
    r".*does not have many workers.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*Starting from v1\.9\.0, `tensorboardX` has been removed.*",
    r".*GPU available but not used.*",
    r".*You are using a CUDA device.*",
    r".*LeafSpec.*",
    r".*You defined a `validation_step` but have no `val_dataloader`.*",
    # frozen encoders keep their dropout off on purpose
    r".*module\(s\) in eval mode at the start of training.*",
)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """A clean console: no tips or 'GPU available' banners, only real problems."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def trainer_defaults(
    trainable_model: TrainableModel | None = None,
    train_dataloader: SimilarityDataLoader | None = None,
    val_dataloader: SimilarityDataLoader | None = None,
    default_root_dir: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``pytorch_lightning.Trainer`` that suit similarity training."""
    from pytorch_lightning.callbacks import EarlyStopping, ModelSummary
    from pytorch_lightning.loggers import CSVLogger

    callbacks: list[Any] = [ModelSummary(max_depth=2)]
    if val_dataloader is not None:
        callbacks.append(EarlyStopping(monitor="loss_validation", mode="min", patience=10))
    defaults: dict[str, Any] = {
        "accelerator": "auto",
        "devices": 1,
        "max_epochs": 10,
        "callbacks": callbacks,
        "logger": CSVLogger(save_dir=default_root_dir or ".", name="lightning_logs"),
        "enable_progress_bar": True,
        "profiler": NoProfiler(),
    }
    if default_root_dir:
        defaults["default_root_dir"] = default_root_dir
    if train_dataloader is not None:
        try:
            batches = len(train_dataloader)
        except TypeError:
            batches = 50
        defaults["log_every_n_steps"] = max(1, min(50, batches))
        if isinstance(train_dataloader.batch_sampler, GroupBalancedBatchSampler):
            # it splits its batches across ranks itself; a DistributedSampler cannot be put in
            defaults["use_distributed_sampler"] = False
    if trainable_model is not None:
        # the frozen encoders never change: checkpoints would only copy them over and over
        encoders_frozen = all(not e.trainable for e in trainable_model.model.encoders.values())
        defaults["enable_checkpointing"] = not encoders_frozen
    return defaults


def fit(
    trainable_model: TrainableModel,
    trainer: pl.Trainer | None = None,
    train_dataloader: SimilarityDataLoader | None = None,
    val_dataloader: SimilarityDataLoader | None = None,
    ckpt_path: str | None = None,
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """Train ``trainable_model``; without ``trainer``, one is built from ``trainer_defaults``
    updated with ``trainer_kwargs`` (e.g. ``max_epochs=50``).

    Ctrl-C (a KeyboardInterrupt) raises ``TrainingInterrupted`` saying how many epochs
    completed; ``trainable_model.restore_last_completed_epoch()`` then puts back the weights of
    the last of them, to save. (Lightning's own handling would end the program with exit code 1
    and leave SIGINT ignored.) A divergence raises ``TrainingDivergedError``."""
    if not isinstance(trainable_model, TrainableModel):
        raise TypeError(f"fit trains a simplug TrainableModel, got {type(trainable_model).__name__}")
    if train_dataloader is None:
        raise DataError("fit needs a train_dataloader (PairsSimilarityDataLoader or GroupSimilarityDataLoader)")
    if trainer is not None and trainer_kwargs:
        raise TypeError("give either a trainer or trainer keyword arguments, not both")
    with _interrupt_as_error(trainable_model):
        trainable_model.setup_dataloader(train_dataloader)
        if val_dataloader is not None:
            trainable_model.setup_dataloader(val_dataloader)
        # frozen encoders with a cache: the loaders become index loaders (see simplug.training.cache.fast_path)
        train_dataloader, val_dataloader = trainable_model.setup_cache(train_dataloader, val_dataloader)
        with quiet_lightning():
            if trainer is None:
                params = trainer_defaults(trainable_model, train_dataloader, val_dataloader)
                params.update(trainer_kwargs)
                trainer = pl.Trainer(**params)
            trainer.fit(trainable_model, train_dataloaders=train_dataloader, val_dataloaders=val_dataloader,
                        ckpt_path=ckpt_path)
    return trainer


@contextmanager
def _interrupt_as_error(trainable_model: TrainableModel) -> Iterator[None]:
    """A KeyboardInterrupt, or Lightning's ``sys.exit(1)`` after one, becomes TrainingInterrupted;
    the SIGINT handler Lightning replaces with SIG_IGN is put back."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except KeyboardInterrupt:
        raise _interrupted(trainable_model) from None
    except SystemExit as exc:
        if not isinstance(exc.__context__, KeyboardInterrupt):  # Lightning exits only after a KeyboardInterrupt
            raise
        raise _interrupted(trainable_model) from None
    finally:
        if main and handler is not None and signal.getsignal(signal.SIGINT) is not handler:
            signal.signal(signal.SIGINT, handler)


def _interrupted(trainable_model: TrainableModel) -> TrainingInterrupted:
    done = trainable_model.last_completed_epoch
    if done:
        what = f"after {done} completed epoch(s); restore_last_completed_epoch() puts back the weights of epoch {done}"
    else:
        what = "before the first epoch completed"
    return TrainingInterrupted(f"training interrupted (Ctrl-C) {what}", epochs_completed=done)


def evaluate(evaluator: Any, dataset: Any, model: Any) -> dict[str, float]:
    """Metrics of ``model`` (a SimilarityModel or TrainableModel) on ``dataset``."""
    return evaluator.evaluate(dataset, model)


class Quaterion:
    """The original framework's entry points, for code ported from it."""

    fit = staticmethod(fit)
    evaluate = staticmethod(evaluate)
    trainer_defaults = staticmethod(trainer_defaults)
