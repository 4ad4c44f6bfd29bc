"""``simplug tune CONFIG.toml``: search the ``[tune.space]`` of a job with Optuna.

Honest selection: trials train on the training data minus a validation split carved from it
(per group, seeded) and are scored on that split after every epoch; the held-out split of the
config is scored once, for the chosen model, at the end. Fast: the frozen encoders run once over
every object, and every trial's cache is filled from those outputs. Resumable: the study lives in
an SQLite file in the output folder (or in any database Optuna reaches by URL, which lets several
machines run trials of one study).

Outputs (in ``[tune] dir``, default ``<[output] dir>/tune``): ``study.db``, ``trials.csv``,
``best_config.toml`` (a config ``simplug train`` runs unchanged, reproducing the chosen trial),
``model/`` (the chosen model), ``model_card.md``, ``report.json`` and ``tune.png``.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

import numpy as np
import torch
from simplug.cli.job_config import (
    HEADLINE,
    SECTIONS,
    JobConfig,
    load_job_config,
    unknown_keys_problem,
)
from simplug.cli.tables import format_comparison, text_table
from simplug.cli.train_job import TrainingRun, loaders, read_data, start_run
from simplug.components.encoder import Encoder
from simplug.components.head import EncoderHead
from simplug.errors import ConfigError, TrainingInterrupted
from simplug.model.similarity_model import DEFAULT_ENCODER_KEY, SimilarityModel
from simplug.registry.building import build_component, positive_int
from simplug.training.fit import fit
from simplug.training.trainable import TrainableModel
from simplug.training.tuning import (
    BestEpoch,
    EmbeddedTask,
    EncoderOutputs,
    PrefilledCache,
    apply_params,
    carve_validation,
    checked_interval,
    config_values,
    open_study,
    pareto_front,
    parse_constraints,
    parse_space,
    require_optuna,
    trial_seeded_sampler,
)

DEFAULT_TRIALS = 20
DEFAULT_SHARE = 0.2
DEFAULT_PATIENCE = 30  # epochs without a better choice before a trial stops
#: the keys of a [tune] table
TUNE_KEYS = frozenset({"space", "objective", "constraints", "trials", "timeout", "dir", "storage", "study_name", "seed",
                       "patience", "front", "prune", "one_thread", "refit", "score_every"})
REPORT_EVERY = 5  # epochs between a trial's reports to the pruner
INVALID_IN_A_ROW = 5  # trials in a row whose settings a component refuses before the search stops
# besides the objective, the metrics whose trade-off the report shows (those that are reported)
FRONT = ("retrieval_precision@1", "knn_accuracy@10", "recall@10")


class InvalidTrialSettings(Exception):
    """A trial's combination of values that a component refuses (e.g. a head's weights summing past 1)."""


class TuningJob:
    """One ``simplug tune`` run: the data, the encoder outputs, the study and its trials."""

    def __init__(self, config_path: str, trials: int | None = None, timeout: float | None = None,
                 out: str | None = None, storage: str | None = None, echo: Callable[[str], Any] = print):
        job = load_job_config(config_path)
        self.tune = dict(job.tune)
        unknown = sorted(set(self.tune) - TUNE_KEYS)
        if unknown:
            raise ConfigError(f"{config_path}: {unknown_keys_problem('tune', unknown, TUNE_KEYS)}")
        if "space" not in self.tune:
            raise ConfigError(f"{config_path}: simplug tune needs a [tune.space] table, e.g.\n"
                              "[tune.space]\n\"model.optimizer.lr\" = {low = 1e-4, high = 1e-2, log = true}")
        self.params = parse_space(self.tune["space"], {"model": job.model, "train": job.train},
                                  train_keys=SECTIONS["train"] or ())
        require_optuna()
        self.trials = positive_int(trials if trials is not None else self.tune.get("trials", DEFAULT_TRIALS), "the number of trials")
        self.timeout = timeout if timeout is not None else self.tune.get("timeout")
        if self.timeout is not None and (isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or self.timeout <= 0):
            raise ConfigError(f"the timeout is a number of seconds above 0, got {self.timeout!r}")
        if out is None:
            out = job.resolve_path(str(self.tune["dir"])) if "dir" in self.tune else None
            if out is None and job.output.get("dir"):
                out = os.path.join(job.resolve_path(str(job.output["dir"])), "tune")
        if not out:
            raise ConfigError(f"{config_path}: say where to write the study: [tune] dir = \"...\", [output] dir, or --out DIR")
        self.out = out
        os.makedirs(out, exist_ok=True)
        self.storage = storage or self.tune.get("storage") or f"sqlite:///{os.path.abspath(os.path.join(out, 'study.db'))}"
        self.study_name = str(self.tune.get("study_name", "simplug-tune"))
        self.echo = echo
        self.timings: dict[str, float] = {}
        # the run of simplug train this job mirrors: same seed, same reading of the data
        self.run: TrainingRun = start_run(config_path, out, None, echo)
        self.seed = int(self.tune.get("seed", self.run.settings.get("seed", 0)))
        self.share = self.run.settings.get("validation_share", DEFAULT_SHARE)
        self.patience = positive_int(self.tune.get("patience", DEFAULT_PATIENCE), "[tune] patience", why="a number of epochs")
        self.score_every = checked_interval(self.tune.get("score_every"), "[tune] score_every")
        self.best_models: dict[int, TrainableModel] = {}
        self.interrupted = False
        self.deadline: float | None = None  # time.monotonic() when the search's --timeout ends
        self.invalid_in_a_row = 0
        self.refit_all = self.tune.get("refit", True)
        if not isinstance(self.refit_all, bool):
            raise ConfigError(f"[tune] refit is true (train the chosen setting again on the whole training file, the "
                              f"default) or false (keep the chosen trial's own model), got {self.refit_all!r}")

    @property
    def job(self) -> JobConfig:
        return self.run.job

    # ------------------------------------------------------------------ preparation
    def prepare(self) -> None:
        """Data, the validation split, the encoders and their outputs, the untrained scores."""
        started = time.perf_counter()
        run = self.run
        read_data(run)
        self.fit_samples, self.validation = carve_validation(run.train, run.kind, self.share, int(run.settings.get("seed", 0)))
        run.echo(f"validation split: {len(self.validation)} of the {len(run.train)} training samples "
                 f"(share {self.share}, seed {run.settings.get('seed', 0)}); trials train on the other {len(self.fit_samples)}")
        self.encoders = self._build_encoders()
        # what simplug train's random generators hold when it builds the head: trials start there
        self.rng_after_encoders = (torch.get_rng_state(), random.getstate(), np.random.get_state())
        self.frozen = all(not e.trainable for e in self.encoders.values())
        evaluation = self.job.evaluate
        distance, ks = evaluation.get("distance", "cosine"), evaluation.get("ks", (1, 5, 10))
        self.validation_task = EmbeddedTask(run.kind, self.validation, self.fit_samples, distance, ks)
        self.held_out_task = EmbeddedTask(run.kind, run.held_out, run.train, distance, ks,
                                          candidate_mode=evaluation.get("candidates", "train"))
        self.base = encoders_only_model(self.encoders)
        self.outputs: EncoderOutputs | None = None
        if self.frozen:
            # the one pass of the frozen encoders: every trial's cache and every score reads from it
            encode_started = time.perf_counter()
            cache_dir = run.settings.get("cache_dir")
            self.outputs = EncoderOutputs(self.base, _objects(run.kind, run.train) + _objects(run.kind, run.held_out),
                                          save_dir=self.job.resolve_path(str(cache_dir)) if cache_dir else None)
            self.timings["encode"] = time.perf_counter() - encode_started
            run.echo(f"encoder outputs of {len(self.outputs.objects)} objects: {self.outputs.outcome} "
                     f"({self.timings['encode']:.1f} s); every trial trains from them")
            self.validation_task.use_outputs_table(self.outputs)
            self.held_out_task.use_outputs_table(self.outputs)
        self.untrained_validation = self.validation_task.score(self.base, heads=False)
        self.reported = list(self.untrained_validation)
        self.objective = str(self.tune.get("objective", evaluation.get("headline", HEADLINE[run.kind])))
        if self.objective not in self.reported:
            raise ConfigError(f"[tune] objective {self.objective!r} is not a reported metric; the metrics are: {', '.join(self.reported)}")
        self.constraints = parse_constraints(self.tune.get("constraints"), self.reported)
        front = self.tune.get("front", [m for m in FRONT if m in self.reported])
        if not isinstance(front, list) or any(m not in self.reported for m in front):
            raise ConfigError(f"[tune] front lists metrics to trade off against the objective; pick from: {', '.join(self.reported)}")
        self.front = [self.objective] + [m for m in front if m != self.objective]
        run.echo(f"untrained encoder on the validation split: "
                 + ", ".join(f"{k} {v:.3f}" for k, v in self.untrained_validation.items()))
        if self.constraints:
            run.echo("constraints: " + "; ".join(map(str, self.constraints)))
        self.timings["prepare"] = time.perf_counter() - started

    def _build_encoders(self) -> dict[str, Encoder]:
        model = self.job.model
        if "encoder" in model:
            return {DEFAULT_ENCODER_KEY: build_component("encoders", model["encoder"], Encoder)}
        specs = model.get("encoders")
        if not isinstance(specs, dict) or not specs:
            raise ConfigError(f"{self.job.path}: [model] needs encoder = {{...}} or a table of encoders")
        return {key: build_component("encoders", spec, Encoder) for key, spec in specs.items()}

    # ------------------------------------------------------------------ one trial
    def sections_for(self, pick: Callable[[Any], Any]) -> dict[str, Any]:
        """The job's [model] and [train] with a trial's values."""
        return apply_params({"model": self.job.model, "train": self.job.train}, self.params, pick)

    def _new_model(self, sections: dict[str, Any]) -> tuple[TrainableModel, dict[str, Any], list[Any]]:
        """A model of ``sections`` built exactly as ``simplug train`` builds its config's (same
        random draws), with its cache filled from the stored encoder outputs."""
        run = self.run
        settings = {**run.settings, **sections["train"]}
        model_config = dict(sections["model"])
        if self.frozen:  # the frozen encoders are shared; a trainable one is built anew for each trial
            key = "encoder" if "encoder" in model_config else "encoders"
            model_config[key] = (next(iter(self.encoders.values())) if key == "encoder" else dict(self.encoders))
        torch.set_rng_state(self.rng_after_encoders[0])
        random.setstate(self.rng_after_encoders[1])
        np.random.set_state(self.rng_after_encoders[2])
        model = TrainableModel.from_config(model_config, num_groups=run.group_count)
        if model.loss.target_kind != run.kind:
            raise ConfigError(f"[data] kind is {run.kind!r} but the loss {model_config.get('loss')!r} is a "
                              f"{model.loss.target_kind[:-1]} loss; keep only {run.kind[:-1]} losses in the search space")
        callbacks: list[Any] = []
        if self.frozen and settings.get("cache", "auto") not in (None, False, "none"):
            model.use_cache({"cache_type": "auto"})
            assert self.outputs is not None
            callbacks.append(PrefilledCache(self.outputs))
        return model, settings, callbacks

    def train_one(self, sections: dict[str, Any], report: Callable[[int, float], bool] | None = None,
                  deadline: float | None = None) -> tuple[TrainableModel, BestEpoch]:
        """Train one setting exactly as ``simplug train`` trains its config with ``select_best``
        (same generators, same split), from the stored encoder outputs; past ``deadline`` (a
        ``time.monotonic()`` value) it stops after the epoch running then."""
        model, settings, callbacks = self._new_model(sections)
        selector = BestEpoch(self.validation_task.score, self.objective, self.constraints, self.untrained_validation,
                             report=report, patience=self.patience, deadline=deadline, every=self.score_every)
        # the validation loader only logs a loss; it is there so the random draws match simplug train's
        train_loader, val_loader = loaders(self.run.kind, self.fit_samples, self.validation, settings)
        with self._trial_threads(settings):
            self._fit(model, train_loader, val_loader, settings, [*callbacks, selector])
        return model, selector

    def refit(self, sections: dict[str, Any], epochs: int) -> TrainableModel:
        """The chosen setting trained again on the whole training file (the carved validation
        split included) for the chosen number of epochs, exactly as ``simplug train`` trains the
        written best config. Model selection needed the split held back; the final model need not
        lose a fifth of the data to it."""
        sections = {**sections, "train": {**sections["train"], "epochs": epochs}}
        model, settings, callbacks = self._new_model(sections)
        train_loader, val_loader = loaders(self.run.kind, self.run.train, self.run.held_out, settings)
        with self._trial_threads(settings):
            self._fit(model, train_loader, val_loader, settings, callbacks)
        return model

    def _trial_threads(self, settings: dict[str, Any]) -> Any:
        """One CPU thread while a head trains on cached rows: its matrices are small, so a second
        thread only adds synchronisation, and on a loaded machine waiting for it multiplies the
        time of every step (measured: 5 epochs of the main job 37 s with two threads, 5.4 s with
        one, at load 11 on two cores)."""
        cpu = str(settings.get("accelerator", "cpu")) == "cpu"
        return one_thread() if self.frozen and cpu and self.tune.get("one_thread", True) else nullcontext()

    def _fit(self, model: TrainableModel, train_loader: Any, val_loader: Any, settings: dict[str, Any],
             callbacks: list[Any]) -> None:
        fit(
            model,
            train_dataloader=train_loader,
            val_dataloader=val_loader if settings.get("validate", True) else None,
            max_epochs=int(settings.get("epochs", 10)),
            accelerator=settings.get("accelerator", "cpu"),
            default_root_dir=self.out,
            logger=False,
            callbacks=callbacks,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=False,
            num_sanity_val_steps=0,
        )

    def objective_fn(self, trial: Any) -> float:
        optuna = require_optuna()
        started = time.perf_counter()
        sections = self.sections_for(lambda param: param.suggest(trial))
        prune = bool(self.tune.get("prune", True))

        def report(epoch: int, value: float) -> bool:
            # every few epochs: each report is a database write, and each pruning check reads
            # every trial's values back from the database
            if epoch % REPORT_EVERY:
                return False
            trial.report(value, epoch)
            return prune and trial.should_prune()

        # --timeout bounds the search, the trial running at its end included: Optuna's own timeout
        # only stops new trials, and one trial of a wide head can take a minute
        try:
            model, selector = self.train_one(sections, report, self.deadline)
        except ConfigError as error:
            # one combination a component refuses fails that trial, and the search goes on; the
            # same refusal trial after trial means the space (or the config) is wrong: stop
            self.invalid_in_a_row += 1
            trial.set_user_attr("invalid", str(error))
            if self.invalid_in_a_row >= INVALID_IN_A_ROW:
                raise ConfigError(f"{self.invalid_in_a_row} trials in a row had settings that were refused; the last: "
                                  f"{error}. Narrow the ranges in [tune.space] (or fix the config) so that its "
                                  "combinations are valid") from error
            raise InvalidTrialSettings(str(error)) from error
        self.invalid_in_a_row = 0
        best = selector.best
        assert best is not None
        trial.set_user_attr("epoch", best.epoch)
        trial.set_user_attr("epochs_run", selector.epochs_run)
        # what a config needs to select this epoch again the same way (see write_best_config)
        trial.set_user_attr("last_scored", selector.history[-1]["epoch"] if selector.history else 0)
        trial.set_user_attr("score_every", selector.interval)
        trial.set_user_attr("metrics", best.metrics)
        trial.set_user_attr("feasible", best.feasible)
        misses = [c.violation(best.metrics, self.untrained_validation) for c in self.constraints]
        trial.set_user_attr("violation", sum(misses))
        if hasattr(trial, "set_constraint"):  # Optuna 5: the sampler reads constraints from the trial
            for constraint, miss in zip(self.constraints, misses):
                trial.set_constraint(str(constraint), miss)
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
        if selector.stopped_at_deadline:
            trial.set_user_attr("stopped_at_deadline", True)
        if selector.pruned:
            raise optuna.TrialPruned(f"pruned after epoch {trial.user_attrs['epochs_run']}")
        value = best.metrics[self.objective]
        self._keep_if_best(trial.number, model, best.feasible, value)
        return value

    def _keep_if_best(self, number: int, model: TrainableModel, feasible: bool, value: float) -> None:
        """Keep the model of this process's best trial so far (the others are dropped)."""
        key = (feasible, value)
        if not self.best_models or key > self._kept_key:
            self.best_models = {number: model}
            self._kept_key = key

    # ------------------------------------------------------------------ the study
    def search(self) -> Any:
        optuna = require_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        parts = {
            "data": _data_identity(self.job),
            "model": self.job.model,
            "train": {k: v for k, v in self.job.train.items() if k not in ("num_workers", "accelerator", "cache_dir")},
            "evaluate": self.job.evaluate,
            "space": self.tune["space"],
            "objective": self.objective,
            "constraints": [str(c) for c in self.constraints],
            "validation": {"share": self.share, "seed": self.run.settings.get("seed", 0)},
        }
        constraints = {} if hasattr(optuna.trial.Trial, "set_constraint") else {"constraints_func": _constraint_values}
        startup = min(8, max(2, self.trials // 3))
        sampler = trial_seeded_sampler(
            lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, **constraints), self.seed)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2 * REPORT_EVERY)
        study = open_study(self.storage, self.study_name, parts, sampler, pruner)
        start_from = config_values({"model": self.job.model, "train": self.job.train}, self.params)
        if start_from:  # the config's own setting first (once per study, also when several processes share it)
            study.enqueue_trial(start_from, user_attrs={"from_config": True}, skip_if_exists=True)
        done = _finished(study)
        wanted = max(0, self.trials - done)
        self.echo(f"study {self.study_name!r} in {self.storage}: {done} finished trial(s) before this run; "
                  f"running until {self.trials}" + (f" or {self.timeout:g} s" if self.timeout else ""))
        started = time.perf_counter()
        self.deadline = time.monotonic() + self.timeout if self.timeout else None
        if wanted:
            stop = optuna.study.MaxTrialsCallback(self.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
            # Optuna logs a trial that Ctrl-C stops as a failure, with a traceback; the message below says it instead
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            try:
                study.optimize(self.objective_fn, n_trials=wanted, timeout=self.timeout, callbacks=[stop, self._print_trial],
                               gc_after_trial=False, catch=(InvalidTrialSettings,))
            except (KeyboardInterrupt, TrainingInterrupted):
                # the finished trials are in the study: report on them; the same command resumes
                self.interrupted = True
                stopped = [t.number for t in study.trials
                           if t.state == optuna.trial.TrialState.FAIL and "invalid" not in t.user_attrs]
                self.echo(f"interrupted (Ctrl-C): {_finished(study)} finished trial(s) are stored in {self.storage}"
                          + (f" (trial {stopped[-1]}, stopped part-way, is stored as failed and not counted)" if stopped else "")
                          + "; the same command resumes the study. Choosing among the finished trials:")
            finally:
                optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.timings["search"] = time.perf_counter() - started
        return study

    def _print_trial(self, study: Any, trial: Any) -> None:
        state = trial.state.name.lower()
        if "invalid" in trial.user_attrs:
            self.echo(f"trial {trial.number} failed, its settings were refused: {trial.user_attrs['invalid']}")
            return
        metrics = trial.user_attrs.get("metrics", {})
        shown = ", ".join(f"{m} {metrics[m]:.3f}" for m in self.front if m in metrics)
        epoch = trial.user_attrs.get("epoch")
        self.echo(f"trial {trial.number} {state}: {shown}" + (f" (epoch {epoch} of {trial.user_attrs.get('epochs_run')})" if epoch else "")
                  + ("" if trial.user_attrs.get("feasible", True) else " [misses constraints]")
                  + (" [stopped at the time limit]" if trial.user_attrs.get("stopped_at_deadline") else "")
                  + (" [the config's own setting]" if trial.user_attrs.get("from_config") else "")
                  + f" {trial.user_attrs.get('seconds', 0):.1f} s")

    # ------------------------------------------------------------------ the result
    def finish(self, study: Any) -> dict[str, Any]:
        optuna = require_optuna()
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete and self.interrupted:
            raise TrainingInterrupted(f"interrupted (Ctrl-C) before any trial finished; nothing to choose from. The same "
                                      f"command resumes the study in {self.storage}")
        if not complete:
            raise ConfigError("no trial finished (all pruned or failed); run more trials (--trials) or a longer --timeout")
        best = max(complete, key=lambda t: (bool(t.user_attrs.get("feasible")), t.value))
        started = time.perf_counter()
        sections = self.sections_for(lambda param: param.suggest(optuna.trial.FixedTrial(best.params)))
        chosen_epoch = int(best.user_attrs.get("epoch") or sections["train"].get("epochs", 10))
        score_every = None  # a refit model's config trains its epochs without selection
        if self.refit_all:
            try:
                model, retrained = self.refit(sections, chosen_epoch), True
            except TrainingInterrupted:
                raise TrainingInterrupted(
                    f"interrupted (Ctrl-C) while trial {best.number}'s setting was trained again on the whole training file; "
                    f"nothing was saved. The study in {self.storage} keeps every finished trial: the same command chooses "
                    "again and trains the final model") from None
            sections["train"]["epochs"] = chosen_epoch
            final = f"trial {best.number}, refit"
            self.echo(f"final model: trial {best.number}'s settings trained again on all {len(self.run.train)} training "
                      f"samples for {chosen_epoch} epochs (its chosen epoch)")
        else:
            model = self.best_models.get(best.number)
            retrained = model is None
            if model is None:  # found by another process or an earlier run: train it again (same seed, same result)
                model, _ = self.train_one(sections)
            # the config scores the very epochs the trial scored: it trains up to the last of them
            # (the trial may have run on a few unscored epochs before patience stopped it), scoring
            # at the trial's interval
            sections["train"]["epochs"] = int(best.user_attrs.get("last_scored") or sections["train"].get("epochs", 10))
            score_every = best.user_attrs.get("score_every")
            final = f"trial {best.number}"
        self.timings["final_model"] = time.perf_counter() - started
        # the held-out split, scored once
        untrained = self.held_out_task.score(self.base, heads=False)
        trained = self.held_out_task.score(model.model)
        columns = {"untrained encoder": untrained, f"tuned ({final})": trained}
        rows = [_trial_row(t) for t in complete]
        front = [complete[i].number for i in pareto_front([r["metrics"] for r in rows], self.front)]
        out = self.out
        model_dir = model.model.save(os.path.join(out, "model"), training={
            **model.training_info(),
            "tuning": {"trial": best.number, "params": best.params, "epoch": best.user_attrs.get("epoch"),
                       "refit": self.refit_all,
                       "validation": best.user_attrs.get("metrics"), "held_out": {"untrained": untrained, "tuned": trained}},
        })
        config_path = write_best_config(self.job, sections, self.objective, [str(c) for c in self.constraints],
                                        self.share, os.path.join(out, "best_config.toml"), select_best=not self.refit_all,
                                        score_every=score_every)
        trials_path = write_trials_csv(study, self.reported, os.path.join(out, "trials.csv"))
        plot = plot_study(study, self.objective, self.front, front, os.path.join(out, "tune.png"))
        report = {
            "config": os.path.abspath(self.job.path),
            "study": {"storage": self.storage, "name": self.study_name, "trials": len(study.trials),
                      "complete": len(complete), "pruned": sum(t.state.name == "PRUNED" for t in study.trials)},
            "validation": {"share": self.share, "samples": len(self.validation), "untrained": self.untrained_validation},
            "objective": self.objective,
            "constraints": [str(c) for c in self.constraints],
            "best": {"trial": best.number, "value": best.value, "params": best.params, "epoch": best.user_attrs.get("epoch"),
                     "feasible": bool(best.user_attrs.get("feasible")), "validation": best.user_attrs.get("metrics"),
                     "retrained": retrained,
                     "refit": {"samples": len(self.run.train), "epochs": chosen_epoch} if self.refit_all else None},
            "held_out": {"protocol": self.held_out_task.description, "untrained": untrained, "tuned": trained},
            "front": [{"trial": t.number, **{m: t.user_attrs["metrics"][m] for m in self.front}} for t in complete if t.number in front],
            "seconds": {k: round(v, 3) for k, v in self.timings.items()},
            "model": os.path.abspath(model_dir),
            "best_config": os.path.abspath(config_path),
            "trials_table": os.path.abspath(trials_path),
            "plot": plot and os.path.abspath(plot),
        }
        table = format_comparison(columns)
        with open(os.path.join(out, "model_card.md"), "w", encoding="utf-8") as fh:
            fh.write(model_card(report, table))
        with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
        echo = self.echo
        echo("")
        echo(trials_table(complete, self.front))
        echo("")
        echo(f"Pareto front over {', '.join(self.front)} (validation split): trials {', '.join(map(str, front))}")
        if not best.user_attrs.get("feasible"):
            echo("warning: no trial met the constraints; the chosen trial misses them least")
        echo(f"chosen: trial {best.number} ({self.objective} {best.value:.3f} on the validation split, epoch "
             f"{best.user_attrs.get('epoch')}): {json.dumps(best.params)}")
        echo("")
        echo(f"held-out metrics, scored once ({self.held_out_task.description}):")
        echo(table)
        echo("")
        echo(f"model: {report['model']}")
        echo(f"best config (simplug train runs it unchanged): {report['best_config']}")
        echo(f"trials: {report['trials_table']}, report: {os.path.abspath(os.path.join(out, 'report.json'))}"
             + (f", plot: {report['plot']}" if plot else ""))
        return report


@contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def encoders_only_model(encoders: dict[str, Encoder]) -> Any:
    """The encoders with no head (what the untrained baseline scores)."""
    size = sum(e.embedding_size for e in encoders.values())
    return SimilarityModel(dict(encoders), build_component("heads", "empty", EncoderHead, input_embedding_size=size))


def _objects(kind: str, samples: list[Any]) -> list[Any]:
    if kind == "groups":
        return [s.obj for s in samples]
    return [s.obj_a for s in samples] + [s.obj_b for s in samples]


def _data_identity(job: JobConfig) -> dict[str, Any]:
    """The data as content (file digests), so machines with other paths share one study."""
    out: dict[str, Any] = {k: v for k, v in job.data.items() if k not in ("train", "validation")}
    for split in ("train", "validation"):
        h = hashlib.sha256()
        with open(job.resolve_path(job.data[split]), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out[split] = h.hexdigest()
    return out


def _constraint_values(trial: Any) -> tuple[float]:
    """Optuna 4's constraints_func: above 0 where the trial misses the constraints."""
    return (float(trial.user_attrs.get("violation", 0.0)),)


def _finished(study: Any) -> int:
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)


def _trial_row(trial: Any) -> dict[str, Any]:
    return {"number": trial.number, "metrics": trial.user_attrs["metrics"]}


def trials_table(trials: list[Any], metrics: list[str]) -> str:
    """The finished trials, best objective first."""
    keys = sorted({k for t in trials for k in t.params})
    ordered = sorted(trials, key=lambda t: (bool(t.user_attrs.get("feasible")), t.value), reverse=True)
    rows = []
    for t in ordered:
        got = t.user_attrs.get("metrics", {})
        rows.append([str(t.number), *(f"{got[m]:.3f}" if m in got else "-" for m in metrics),
                     "yes" if t.user_attrs.get("feasible") else "no", str(t.user_attrs.get("epoch", "-")),
                     *(_short(t.params.get(k, "-")) for k in keys)])
    return text_table(["trial", *metrics, "meets", "epoch", *(k.split(".", 1)[1] for k in keys)], rows)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_trials_csv(study: Any, metrics: list[str], path: str) -> str:
    keys = sorted({k for t in study.trials for k in t.params})
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["trial", "state", "value", "meets_constraints", "epoch", "epochs_run", "seconds", *keys, *metrics])
        for t in study.trials:
            got = t.user_attrs.get("metrics", {})
            writer.writerow([t.number, t.state.name.lower(), "" if t.value is None else t.value,
                             t.user_attrs.get("feasible", ""), t.user_attrs.get("epoch", ""), t.user_attrs.get("epochs_run", ""),
                             t.user_attrs.get("seconds", ""), *(t.params.get(k, "") for k in keys), *(got.get(m, "") for m in metrics)])
    return path


def write_best_config(job: JobConfig, sections: dict[str, Any], objective: str, constraints: list[str],
                      share: float, path: str, select_best: bool = True, score_every: int | None = None) -> str:
    """The job with the chosen trial's values, as a config ``simplug train`` runs unchanged:
    paths rewritten relative to the new file; with ``select_best``, best-epoch selection on the
    same carved split (the trial's own model), else the chosen epochs on the whole training file
    (the refit model)."""
    where = os.path.dirname(os.path.abspath(path))

    def moved(value: str) -> str:
        return os.path.relpath(job.resolve_path(value), where)

    data = dict(job.data)
    for split in ("train", "validation"):
        data[split] = moved(str(data[split]))
    train = dict(sections["train"])
    if "cache_dir" in train:
        train["cache_dir"] = moved(str(train["cache_dir"]))
    if select_best:
        train["select_best"] = {"metric": objective, "constraints": constraints,
                                **({"every": score_every} if score_every else {})}
        train["validation_share"] = share
    config = {"data": data, "model": sections["model"], "train": train}
    if job.evaluate:
        config["evaluate"] = dict(job.evaluate)
    # beside the config, not the job's own [output] dir: retraining must not replace the model of the run it was tuned from
    config["output"] = {"dir": "retrained"}
    text = dump_toml(config)
    header = (f"# Written by simplug tune from {os.path.abspath(job.path)}: the chosen trial's settings.\n"
              f"# simplug train {os.path.basename(path)} trains the same model again.\n")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(header + text)
    return path


def dump_toml(config: dict[str, Any]) -> str:
    """TOML text of a config: with tomli-w when it is installed, else a small writer for what
    job configs hold (tables of strings, numbers, booleans, lists and inline tables)."""
    try:
        import tomli_w
    except ImportError:
        return small_toml(config)
    return tomli_w.dumps(config)


def small_toml(config: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            if math.isnan(v) or math.isinf(v):
                return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise ConfigError(f"cannot write {type(v).__name__} values to TOML")

    def key(k: str) -> str:
        return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k)

    lines = []
    for section, table in config.items():
        lines.append(f"[{key(section)}]")
        lines.extend(f"{key(k)} = {value(v)}" for k, v in table.items())
        lines.append("")
    return "\n".join(lines)


def model_card(report: dict[str, Any], table: str) -> str:
    best = report["best"]
    lines = [
        "# Tuned model",
        "",
        f"Found by `simplug tune` on `{report['config']}`: trial {best['trial']} of {report['study']['trials']} "
        f"({report['study']['pruned']} pruned), chosen on a validation split carved from the training data "
        f"({report['validation']['samples']} samples) by {report['objective']}"
        + (f" under the constraints {', '.join(report['constraints'])}" if report["constraints"] else "") + ".",
        "",
        f"Settings: `{json.dumps(best['params'])}`, weights of epoch {best['epoch']}.",
        "",
        f"Held-out split, scored once ({report['held_out']['protocol']}):",
        "",
        "```",
        table,
        "```",
        "",
        f"Retrain with `simplug train {report['best_config']}`.",
        "",
    ]
    return "\n".join(lines)


def plot_study(study: Any, objective: str, front_metrics: list[str], front: list[int], path: str) -> str | None:
    """The objective over trials (and the best so far), and the trials on the front."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not done:
        return None
    others = front_metrics[1:] or [objective]
    fig, axes = plt.subplots(1, 1 + len(others), figsize=(5 * (1 + len(others)), 4), squeeze=False)
    ax = axes[0][0]
    numbers = [t.number for t in done]
    values = [t.value for t in done]
    ok = [bool(t.user_attrs.get("feasible")) for t in done]
    ax.scatter([n for n, f in zip(numbers, ok) if f], [v for v, f in zip(values, ok) if f], label="meets constraints", color="tab:green")
    ax.scatter([n for n, f in zip(numbers, ok) if not f], [v for v, f in zip(values, ok) if not f], label="misses them", color="tab:gray")
    running, best = [], -math.inf
    for t in done:
        if t.user_attrs.get("feasible"):
            best = max(best, t.value)
        running.append(best if best > -math.inf else float("nan"))
    ax.plot(numbers, running, color="tab:green", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {objective}")
    ax.legend()
    for ax, other in zip(axes[0][1:], others):
        xs = [t.user_attrs["metrics"][other] for t in done]
        on = [t.number in front for t in done]
        ax.scatter([x for x, f in zip(xs, on) if not f], [v for v, f in zip(values, on) if not f], color="tab:gray", label="dominated")
        ax.scatter([x for x, f in zip(xs, on) if f], [v for v, f in zip(values, on) if f], color="tab:red", label="Pareto front")
        ax.set_xlabel(f"validation {other}")
        ax.set_ylabel(f"validation {objective}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_tuning(config_path: str, trials: int | None = None, timeout: float | None = None, out: str | None = None,
               storage: str | None = None, echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """``simplug tune``: search, choose, score the held-out split once, write the outputs."""
    job = TuningJob(config_path, trials, timeout, out, storage, echo)
    job.prepare()
    study = job.search()
    return job.finish(study)
