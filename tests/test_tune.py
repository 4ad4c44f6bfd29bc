"""simplug tune: the search space, the carved validation split, constraints, best-epoch
selection, the Pareto front, the study store, and the command end to end on a small job."""
from __future__ import annotations

import csv
import subprocess
import sys
import tomllib

import pytest
import torch

optuna = pytest.importorskip("optuna")

from simplug.cli.tune_job import run_tuning, small_toml  # noqa: E402
from simplug.data.samples import SimilarityGroupSample, SimilarityPairSample  # noqa: E402
from simplug.errors import ConfigError, DataError  # noqa: E402
from simplug.evaluation.heldout import HeldOutScorer, retrieval_task  # noqa: E402
from simplug.training.tuning import (  # noqa: E402
    Constraint,
    EmbeddedTask,
    EncoderOutputs,
    apply_params,
    carve_validation,
    pareto_front,
    parse_constraints,
    parse_space,
)

from conftest import run_cli  # noqa: E402
from test_jobs import make_group_job  # noqa: E402

TRAIN_KEYS = {"epochs", "batch_size", "seed", "m_per_group", "cache", "cache_dir"}
MODEL = {"encoder": {"name": "torch_module"}, "head": {"name": "skip_connection"},
         "loss": {"name": "supervised_contrastive", "temperature": 0.1}, "optimizer": {"name": "adam", "lr": 0.001}}

TUNE_SECTION = """
[tune]
trials = {trials}
objective = "retrieval_r_precision"

[tune.space]
"model.optimizer.lr" = {{low = 0.003, high = 0.05, log = true}}
"model.loss.name" = {{choices = ["triplet", "supervised_contrastive"]}}
"model.loss.margin" = {{low = 0.2, high = 1.0}}
"train.epochs" = {{low = 2, high = 4}}
"""


def tune_job(tmp_path, trials=3, extra=""):
    config = make_group_job(tmp_path)
    with open(config, "a", encoding="utf-8") as fh:
        fh.write(TUNE_SECTION.format(trials=trials) + extra)
    return config


def quiet(line):
    pass


# ------------------------------------------------------------------ validation split
def test_carved_split_is_stratified_disjoint_and_seeded():
    samples = [SimilarityGroupSample(f"o{i}", g) for g, n in enumerate([2, 5, 10, 23]) for i in range(n)]
    fit, val = carve_validation(samples, "groups", 0.2, seed=3)
    assert sorted(map(id, fit + val)) == sorted(map(id, samples)) and not set(map(id, fit)) & set(map(id, val))
    for group, n in enumerate([2, 5, 10, 23]):
        held = sum(s.group == group for s in val)
        assert 1 <= held <= n - 1 and held == min(n - 1, max(1, round(n * 0.2)))
    again, _ = carve_validation(samples, "groups", 0.2, seed=3)
    other, _ = carve_validation(samples, "groups", 0.2, seed=4)
    assert [s.obj for s in again] == [s.obj for s in fit] and [s.obj for s in other] != [s.obj for s in fit]


def test_too_few_items_per_group_is_an_error_with_the_numbers():
    samples = [SimilarityGroupSample("a", 0), SimilarityGroupSample("b", 0), SimilarityGroupSample("c", 1)]
    with pytest.raises(DataError, match=r"at least 2 training items in every group.*1 of 2 groups have fewer \(group 1 has 1"):
        carve_validation(samples, "groups", 0.2, seed=0)
    pairs = [SimilarityPairSample(f"q{i}", f"a{i}") for i in range(2)]
    with pytest.raises(DataError, match="from 2 training pairs"):
        carve_validation(pairs, "pairs", 0.2, seed=0)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        carve_validation(pairs, "pairs", 1.5, seed=0)


# ------------------------------------------------------------------ search space
def test_space_errors_name_the_problem_and_the_fix():
    sections = {"model": MODEL, "train": {"epochs": 3}}
    with pytest.raises(ConfigError, match=r"model.optimizer has no 'lrr'.*the keys there are: lr, name"):
        parse_space({"model.optimizer.lrr": {"low": 1e-4, "high": 1e-2}}, sections, train_keys=TRAIN_KEYS)
    with pytest.raises(ConfigError, match=r"model has no 'optimiser'.*keys there are: encoder, head, loss, optimizer"):
        parse_space({"model.optimiser.lr": {"low": 1e-4, "high": 1e-2}}, sections, train_keys=TRAIN_KEYS)
    with pytest.raises(ConfigError, match=r"'train.epoch' is not a \[train\] key.*batch_size, epochs, m_per_group, seed"):
        parse_space({"train.epoch": {"low": 1, "high": 3}}, sections, train_keys=TRAIN_KEYS)
    with pytest.raises(ConfigError, match="empty range"):
        parse_space({"train.epochs": {"low": 3, "high": 3}}, sections, train_keys=TRAIN_KEYS)
    with pytest.raises(ConfigError, match=r"inverted range \(low 0.01 > high 0.0001\); swap them"):
        parse_space({"model.optimizer.lr": {"low": 1e-2, "high": 1e-4}}, sections, train_keys=TRAIN_KEYS)
    with pytest.raises(ConfigError, match="log range, so low must be positive"):
        parse_space({"model.optimizer.lr": {"low": 0.0, "high": 1e-2, "log": True}}, sections, train_keys=TRAIN_KEYS)
    with pytest.raises(ConfigError, match="choices must be a non-empty list"):
        parse_space({"model.loss.name": {"choices": []}}, sections, train_keys=TRAIN_KEYS)
    with pytest.raises(ConfigError, match="triplet"):  # an unknown loss lists close matches
        parse_space({"model.loss.name": {"choices": ["triplett"]}}, sections, train_keys=TRAIN_KEYS)


def test_component_arguments_follow_the_picked_component():
    sections = {"model": MODEL, "train": {"epochs": 3}}
    space = {"model.loss.name": {"choices": ["triplet", "supervised_contrastive"]},
             "model.loss.margin": {"low": 0.1, "high": 1.0}, "model.loss.temperature": {"low": 0.05, "high": 0.5}}
    # margin is no argument of the configured loss, but of a loss the space can pick: allowed
    params = parse_space(space, sections, train_keys=TRAIN_KEYS)
    values = {"model.loss.margin": 0.3, "model.loss.temperature": 0.2}
    picked: list[str] = []

    def pick(name):
        def choose(param):
            picked.append(param.key)
            return name if param.key.endswith("name") else values[param.key]
        return choose

    triplet = apply_params(sections, params, pick("triplet"))
    assert triplet["model"]["loss"] == {"name": "triplet", "margin": 0.3}  # the config's temperature is dropped
    assert "model.loss.temperature" not in picked
    picked.clear()
    supcon = apply_params(sections, params, pick("supervised_contrastive"))
    assert supcon["model"]["loss"] == {"name": "supervised_contrastive", "temperature": 0.2}
    assert "model.loss.margin" not in picked and sections["model"]["loss"]["temperature"] == 0.1  # the job is not changed


# ------------------------------------------------------------------ constraints and the front
def test_constraints_parse_and_measure_their_miss():
    untrained = {"retrieval_precision@1": 0.8, "retrieval_r_precision": 0.4}
    c = Constraint.parse("retrieval_precision@1 >= untrained-0.01")
    assert c.violation({"retrieval_precision@1": 0.79, "retrieval_r_precision": 0.5}, untrained) == 0
    assert c.violation({"retrieval_precision@1": 0.70, "retrieval_r_precision": 0.5}, untrained) == pytest.approx(0.09)
    assert Constraint.parse("retrieval_r_precision <= 0.5").violation({"retrieval_r_precision": 0.75}, untrained) == pytest.approx(0.25)
    assert [str(x) for x in parse_constraints(None, ["retrieval_precision@1", "retrieval_r_precision"])] == [
        "retrieval_precision@1 >= untrained", "retrieval_r_precision >= untrained"]
    with pytest.raises(ConfigError, match=r"on 'knn_accuracy@5', which is not reported; the reported metrics are: retrieval_precision@1, retrieval_r_precision"):
        parse_constraints(["knn_accuracy@5 >= 0.5"], ["retrieval_precision@1", "retrieval_r_precision"])
    with pytest.raises(ConfigError, match="is not understood"):
        parse_constraints(["retrieval_precision@1 > untrained"], ["retrieval_precision@1"])


def test_pareto_front_matches_optunas_multi_objective_front():
    gen = torch.Generator().manual_seed(0)
    rows = [{"a": float(x), "b": float(y), "c": float(z)} for x, y, z in torch.rand(40, 3, generator=gen).mul(4).round() / 4]
    study = optuna.create_study(directions=["maximize"] * 3)
    for row in rows:
        study.add_trial(optuna.trial.create_trial(values=[row["a"], row["b"], row["c"]]))
    # Optuna keeps one of each set of equal rows on its front; ours keeps them all
    theirs = {tuple(t.values) for t in study.best_trials}
    ours = pareto_front(rows, ["a", "b", "c"])
    assert {(rows[i]["a"], rows[i]["b"], rows[i]["c"]) for i in ours} == theirs
    assert 0 < len(ours) < len(rows)


# ------------------------------------------------------------------ scoring from stored outputs
def test_scores_from_stored_outputs_equal_the_held_out_scorer(tmp_path):
    from simplug.cli.train_job import build_model, read_data, start_run

    run = start_run(str(make_group_job(tmp_path)), echo=quiet)
    read_data(run)
    build_model(run)
    model = run.model.model
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # a head that changes the ranking
    outputs = EncoderOutputs(model, [s.obj for s in run.train + run.held_out])
    task = EmbeddedTask("groups", run.held_out, run.train, ks=(1, 5))
    task.use_outputs_table(outputs)
    reference = HeldOutScorer(retrieval_task("groups", run.held_out, run.train), ks=(1, 5))
    for heads in (True, False):
        ours, theirs = task.score(model, heads=heads), reference.score(model, heads=heads)
        assert {k: ours[k] for k in theirs} == pytest.approx(theirs, abs=1e-6)
        assert "knn_accuracy@10" in ours


def test_stored_outputs_are_reused_and_a_damaged_file_is_not(tmp_path):
    from simplug.cli.train_job import build_model, read_data, start_run

    run = start_run(str(make_group_job(tmp_path)), echo=quiet)
    read_data(run)
    build_model(run)
    objects = [s.obj for s in run.train]
    first = EncoderOutputs(run.model.model, objects, save_dir=str(tmp_path / "cache"))
    second = EncoderOutputs(run.model.model, objects, save_dir=str(tmp_path / "cache"))
    assert first.outcome.startswith("encoded, kept in") and second.outcome.startswith("reused")
    assert torch.equal(first.outputs, second.outputs)
    (path,) = (tmp_path / "cache").glob("tune-*.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in the rows
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="do not match their checksum"):
        third = EncoderOutputs(run.model.model, objects, save_dir=str(tmp_path / "cache"))
    assert third.outcome.startswith("encoded") and torch.equal(third.outputs, first.outputs)


def test_small_toml_writer_round_trips():
    config = {"data": {"kind": "groups", "fields": {"obj": "te\"xt", "group": "c"}},
              "train": {"epochs": 3, "lr": 1e-3, "select_best": {"metric": "retrieval_r_precision", "constraints": ["a >= untrained"]},
                        "flag": True, "ks": [1, 5]},
              "model": {"loss": {"name": "triplet", "margin": 0.5}, "key with space": 1}}
    assert tomllib.loads(small_toml(config)) == config


# ------------------------------------------------------------------ the command end to end
def test_tune_end_to_end_and_the_best_config_retrains_the_same_model(tmp_path):
    from simplug.cli.train_job import run_training

    config = tune_job(tmp_path)
    report = run_tuning(str(config), echo=quiet)
    out = tmp_path / "run" / "tune"
    for name in ("study.db", "trials.csv", "best_config.toml", "model_card.md", "report.json", "tune.png"):
        assert (out / name).exists(), name
    assert report["study"]["trials"] == 3 and report["best"]["trial"] in [row["trial"] for row in report["front"]]
    assert (out / "model" / "manifest.json").exists()
    # the final model: the chosen setting trained again on the whole training file, for the chosen epochs
    training_rows = len((tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines())
    assert report["best"]["refit"] == {"samples": training_rows, "epochs": report["best"]["epoch"]}
    best = tomllib.loads((out / "best_config.toml").read_text(encoding="utf-8"))
    assert "select_best" not in best["train"] and "tune" not in best
    assert best["train"]["epochs"] == report["best"]["epoch"]
    assert best["output"] == {"dir": "retrained"}  # beside the config: the tuned job's own run is not replaced
    # simplug train runs the written config unchanged and gets the same held-out numbers
    retrained = run_training(str(out / "best_config.toml"), output_dir=str(tmp_path / "again"), echo=quiet)
    tuned = report["held_out"]["tuned"]
    assert {k: tuned[k] for k in retrained["trained"]} == pytest.approx(retrained["trained"], abs=1e-6)


def assert_best_config_selects_the_trials_epoch(tmp_path, report):
    """simplug train runs the written best config (refit = false) and selects the same epoch, with the same numbers."""
    from simplug.cli.train_job import run_training

    retrained = run_training(str(tmp_path / "run" / "tune" / "best_config.toml"), output_dir=str(tmp_path / "again"), echo=quiet)
    assert retrained["selected"]["epoch"] == report["best"]["epoch"]
    tuned = report["held_out"]["tuned"]
    assert {k: tuned[k] for k in retrained["trained"]} == pytest.approx(retrained["trained"], abs=1e-6)


def test_without_refit_the_trial_model_is_kept_and_its_config_selects_the_same_epoch(tmp_path):
    config = tune_job(tmp_path, trials=2, extra="")
    text = config.read_text(encoding="utf-8").replace("[tune]\n", "[tune]\nrefit = false\n", 1)
    config.write_text(text, encoding="utf-8")
    report = run_tuning(str(config), echo=quiet)
    assert report["best"]["refit"] is None
    best = tomllib.loads((tmp_path / "run" / "tune" / "best_config.toml").read_text(encoding="utf-8"))
    assert best["train"]["select_best"]["metric"] == "retrieval_r_precision"
    assert_best_config_selects_the_trials_epoch(tmp_path, report)


def test_unknown_tune_keys_and_a_bad_refit_are_named(tmp_path):
    config = tune_job(tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[tune]\n", "[tune]\ntrails = 40\n", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) trails in \[tune\] \(did you mean 'trails' -> 'trials'\?\); the keys are: .*trials"):
        run_tuning(str(config), echo=quiet)
    config.write_text(text.replace("[tune]\n", "[tune]\nrefit = \"yes\"\n", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"refit is true .* or false"):
        run_tuning(str(config), echo=quiet)


def test_an_extended_study_resumes_and_another_config_is_refused(tmp_path):
    config = tune_job(tmp_path, trials=2)
    printed: list[str] = []
    run_tuning(str(config), echo=printed.append)
    run_tuning(str(config), trials=3, echo=printed.append)
    assert any("2 finished trial(s) before this run" in line for line in printed)
    study = optuna.load_study(study_name="simplug-tune", storage=f"sqlite:///{tmp_path / 'run' / 'tune' / 'study.db'}")
    assert len([t for t in study.trials if t.state.is_finished()]) == 3
    assert study.trials[2].params != study.trials[1].params  # the resumed run does not redraw the first run's setting
    changed = config.read_text(encoding="utf-8").replace("lr = 0.01", "lr = 0.02")
    config.write_text(changed, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"made from another config \(it differs in: model\)"):
        run_tuning(str(config), trials=4, echo=quiet)


def test_bad_tune_input_is_named_on_the_command_line(tmp_path):
    config = tune_job(tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('"model.optimizer.lr"', '"model.optimizer.lrate"'), encoding="utf-8")
    result = run_cli("tune", str(config))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "model.optimizer has no 'lrate'" in result.stderr and "the keys there are: lr, name" in result.stderr
    config.write_text(text.replace('objective = "retrieval_r_precision"', 'objective = "retrieval_r_precision"\nconstraints = ["knn_accuracy@5 >= untrained"]'),
                      encoding="utf-8")
    result = run_cli("tune", str(config))
    assert result.returncode == 1 and "'knn_accuracy@5', which is not reported" in result.stderr and "knn_accuracy@10" in result.stderr


def test_each_trial_draws_from_its_own_seed_so_runs_reproduce_and_resumes_do_not_repeat():
    from simplug.training.tuning import trial_seeded_sampler

    def draws(seed, storage=None, runs=1, per_run=3):
        values = []
        for _ in range(runs):  # each run: a new process's sampler on the same study
            sampler = trial_seeded_sampler(lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=10), seed)
            study = optuna.create_study(storage=storage, study_name="s", sampler=sampler, load_if_exists=True)
            study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=per_run)
            values = [t.params["x"] for t in study.trials]
        return values

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert draws(3) == draws(3) != draws(4)  # reproducible from the seed
    assert len(set(draws(3))) == 3
    resumed = optuna.storages.InMemoryStorage()
    assert len(set(draws(3, storage=resumed, runs=2))) == 6  # a second run on the study draws new values
    assert draws(3, storage=optuna.storages.InMemoryStorage(), runs=2)[:3] == draws(3)


def test_two_processes_share_one_sqlite_study(tmp_path):
    config = tune_job(tmp_path, trials=4)
    out = tmp_path / "shared"
    command = [sys.executable, "-m", "simplug.cli", "tune", str(config), "--out", str(out)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in processes]
    for process, (stdout, stderr) in zip(processes, results):
        assert process.returncode == 0, stderr
    study = optuna.load_study(study_name="simplug-tune", storage=f"sqlite:///{out / 'study.db'}")
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(len(numbers))) and len(numbers) >= 4
    assert all(t.state.is_finished() and t.state.name != "FAIL" for t in study.trials)
    # the processes draw different settings (both may enqueue the config's own setting: Optuna's documented race)
    drawn = [tuple(sorted(t.params.items())) for t in study.trials if not t.user_attrs.get("from_config")]
    assert len(set(drawn)) == len(drawn) >= 2


# ------------------------------------------------------------------ best epoch
def test_best_epoch_prefers_epochs_meeting_the_constraints_restores_them_and_stops_on_patience():
    from types import SimpleNamespace

    from simplug.training.tuning import BestEpoch

    # retrieval_r_precision rises every epoch while precision@1 falls below the untrained 0.80 after epoch 3
    script = [{"retrieval_r_precision": 0.4 + 0.05 * e, "retrieval_precision@1": 0.82 if e <= 3 else 0.78} for e in range(1, 11)]
    module = SimpleNamespace(model=torch.nn.Linear(2, 2))
    weights = []

    def score(pl_module):
        return script[len(weights) - 1]

    selector = BestEpoch(score, "retrieval_r_precision", [Constraint.parse("retrieval_precision@1 >= untrained")], {"retrieval_precision@1": 0.80},
                         patience=4)
    trainer = SimpleNamespace(current_epoch=0, should_stop=False)
    for epoch in range(10):
        with torch.no_grad():
            module.model.weight.add_(1.0)  # what the epoch trained
        weights.append(module.model.weight.detach().clone())
        trainer.current_epoch = epoch
        selector.on_train_epoch_end(trainer, module)
        if trainer.should_stop:
            break
    assert selector.best.epoch == 3 and selector.best.feasible
    assert [row["epoch"] for row in selector.history] == [1, 2, 3, 4, 5, 6, 7]  # stopped 4 epochs after epoch 3
    selector.on_train_end(trainer, module)
    assert torch.equal(module.model.weight, weights[2])
    # with no epoch meeting the constraints, the one that misses them least
    closest = BestEpoch(lambda m: {"retrieval_r_precision": 0.5, "retrieval_precision@1": 0.79}, "retrieval_r_precision",
                        [Constraint.parse("retrieval_precision@1 >= 0.9")], {})
    closest.on_train_epoch_end(SimpleNamespace(current_epoch=0, should_stop=False), module)
    assert closest.best.epoch == 1 and not closest.best.feasible


def test_a_long_run_is_scored_every_few_epochs_and_always_at_its_end():
    from types import SimpleNamespace

    from simplug.training.tuning import BestEpoch, scoring_interval

    assert [scoring_interval(n) for n in (None, 1, 50, 51, 100, 150, 200)] == [1, 1, 1, 2, 2, 3, 4]
    assert scoring_interval(150, every=1) == 1 and scoring_interval(10, every=4) == 4

    def run(max_epochs, every=None, patience=None, deadline_after=None, values=None):
        import time

        scored: list[int] = []
        module = SimpleNamespace(model=torch.nn.Linear(2, 2))
        trainer = SimpleNamespace(current_epoch=0, should_stop=False, max_epochs=max_epochs)

        def score(pl_module):
            scored.append(trainer.current_epoch + 1)
            return {"retrieval_r_precision": (values or {}).get(scored[-1], 0.1 * len(scored))}

        selector = BestEpoch(score, "retrieval_r_precision", patience=patience, every=every)
        for epoch in range(max_epochs):
            trainer.current_epoch = epoch
            if deadline_after is not None and epoch + 1 == deadline_after:
                selector.deadline = time.monotonic() - 1
            selector.on_train_epoch_end(trainer, module)
            if trainer.should_stop:
                break
        assert [row["epoch"] for row in selector.history] == scored
        return selector, scored

    selector, scored = run(120)  # ceil(120 / 50) = 3
    assert scored == list(range(3, 121, 3)) and selector.best.epoch == 120 and selector.interval == 3
    _, scored = run(10, every=4)
    assert scored == [4, 8, 10]  # the last epoch is always scored
    _, scored = run(120, every=1)
    assert scored == list(range(1, 121))
    selector, scored = run(120, deadline_after=7)  # the epoch that ends past the deadline is scored too
    assert scored == [3, 6, 7] and selector.stopped_at_deadline and selector.epochs_run == 7
    # patience can stop the run on an epoch that is not scored: the choice is among the scored ones
    selector, scored = run(120, patience=4, values={3: 0.9, 6: 0.5})
    assert scored == [3, 6] and selector.best.epoch == 3 and selector.epochs_run == 7


def test_without_refit_a_config_scoring_every_few_epochs_selects_the_trials_epoch(tmp_path):
    config = tune_job(tmp_path, trials=2)
    text = config.read_text(encoding="utf-8").replace("[tune]\n", "[tune]\nrefit = false\nscore_every = 2\npatience = 1\n", 1)
    config.write_text(text.replace('"train.epochs" = {low = 2, high = 4}', '"train.epochs" = {low = 5, high = 6}'), encoding="utf-8")
    report = run_tuning(str(config), echo=quiet)
    best = tomllib.loads((tmp_path / "run" / "tune" / "best_config.toml").read_text(encoding="utf-8"))
    assert best["train"]["select_best"]["every"] == 2
    # patience stopped the chosen trial on an epoch it did not score: the config trains up to the last scored one
    study = optuna.load_study(study_name="simplug-tune", storage=f"sqlite:///{tmp_path / 'run' / 'tune' / 'study.db'}")
    chosen = study.trials[report["best"]["trial"]].user_attrs
    assert chosen["epochs_run"] > chosen["last_scored"] == best["train"]["epochs"]
    assert_best_config_selects_the_trials_epoch(tmp_path, report)


def test_a_scoring_interval_below_one_epoch_is_refused(tmp_path):
    from simplug.training.tuning import select_best_settings

    config = tune_job(tmp_path)
    config.write_text(config.read_text(encoding="utf-8").replace("[tune]\n", "[tune]\nscore_every = 0\n", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[tune\] score_every must be a positive int \(epochs between scorings; 1 scores after every epoch\), got 0"):
        run_tuning(str(config), echo=quiet)
    with pytest.raises(ConfigError, match=r"\[train\] select_best every must be a positive int \(epochs between scorings.*\), got 'often'"):
        select_best_settings({"every": "often"}, "retrieval_r_precision")
    assert select_best_settings({"every": 5}, "retrieval_r_precision") == ("retrieval_r_precision", [], 5)


def test_a_number_of_trials_or_a_patience_below_one_is_refused(tmp_path):
    config = tune_job(tmp_path)
    with pytest.raises(ConfigError, match=r"the number of trials must be a positive int, got 0"):
        run_tuning(str(config), trials=0, echo=quiet)
    config.write_text(config.read_text(encoding="utf-8").replace("[tune]\n", "[tune]\npatience = 2.5\n", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[tune\] patience must be a positive int \(a number of epochs\), got 2.5"):
        run_tuning(str(config), echo=quiet)


def test_a_pruned_run_stops_at_once_and_keeps_its_last_weights():
    from types import SimpleNamespace

    from simplug.training.tuning import BestEpoch

    reports: list[tuple[int, float]] = []

    def report(epoch, value):
        reports.append((epoch, value))
        return epoch == 2  # the pruner gives up on the second report

    module = SimpleNamespace(model=torch.nn.Linear(2, 2))
    values = iter([0.5, 0.4, 0.9])
    selector = BestEpoch(lambda m: {"retrieval_r_precision": next(values)}, "retrieval_r_precision", report=report)
    trainer = SimpleNamespace(current_epoch=0, should_stop=False)
    for epoch in range(3):
        trainer.current_epoch = epoch
        with torch.no_grad():
            module.model.bias.add_(1.0)
        selector.on_train_epoch_end(trainer, module)
        if trainer.should_stop:
            break
    assert selector.pruned and reports == [(1, 0.5), (2, 0.5)]  # the best value so far, after every epoch
    last = module.model.bias.detach().clone()
    selector.on_train_end(trainer, module)
    assert torch.equal(module.model.bias, last)


def test_past_its_deadline_a_run_stops_after_the_epoch_and_keeps_its_best_epoch():
    import time
    from types import SimpleNamespace

    from simplug.training.tuning import BestEpoch

    module = SimpleNamespace(model=torch.nn.Linear(2, 2))
    for deadline, epochs_run in ((time.monotonic() + 3600, 3), (time.monotonic() - 1, 1)):
        values = iter([0.5, 0.7, 0.6])
        selector = BestEpoch(lambda m: {"retrieval_r_precision": next(values)}, "retrieval_r_precision", deadline=deadline)
        trainer = SimpleNamespace(current_epoch=0, should_stop=False)
        for epoch in range(3):
            trainer.current_epoch = epoch
            selector.on_train_epoch_end(trainer, module)
            if trainer.should_stop:
                break
        assert len(selector.history) == epochs_run
        assert selector.stopped_at_deadline == (epochs_run == 1) and not selector.pruned
    assert selector.best.epoch == 1


def test_the_timeout_bounds_the_trial_running_when_it_ends(tmp_path, monkeypatch):
    import time

    from simplug.cli.tune_job import TuningJob

    config = tune_job(tmp_path, trials=2, extra="")
    real_train_one = TuningJob.train_one
    deadlines = []

    def train_one(self, sections, report=None, deadline=None):
        deadlines.append(deadline)
        # as if the search's time were up while this trial trains
        return real_train_one(self, sections, report, time.monotonic() - 1 if deadline is not None else None)

    monkeypatch.setattr(TuningJob, "train_one", train_one)
    printed: list[str] = []
    before = time.monotonic()
    report = run_tuning(str(config), timeout=3600, echo=printed.append)
    assert deadlines and before + 3600 <= deadlines[0] <= time.monotonic() + 3600
    stopped = [line for line in printed if line.startswith("trial ") and "[stopped at the time limit]" in line]
    assert stopped and "(epoch 1 of 1)" in stopped[0]
    assert report["study"]["complete"] >= 1
    deadlines.clear()
    (tmp_path / "again").mkdir()
    run_tuning(str(tune_job(tmp_path / "again", trials=1)), echo=quiet)
    assert deadlines[0] is None  # no timeout: no deadline


def test_the_category_routing_space_names_real_keys_of_its_config():
    """The shipped example's [tune.space] tunes the blend head's own arguments: every key must
    resolve against the example's [model] and [train] as `simplug tune` resolves it."""
    from pathlib import Path

    from simplug.cli.job_config import SECTIONS

    path = Path(__file__).resolve().parents[1] / "examples" / "category_routing" / "config.toml"
    config = tomllib.loads(path.read_text(encoding="utf-8"))
    sections = {"model": config["model"], "train": config["train"]}
    params = parse_space(config["tune"]["space"], sections, train_keys=SECTIONS["train"])
    assert "model.head.input_weight" in {p.key for p in params}
    picked = apply_params(sections, params, lambda p: p.low if p.choices is None else p.choices[0])
    assert picked["model"]["head"]["name"] == "blend"
    assert picked["model"]["head"]["input_weight"] == config["tune"]["space"]["model.head.input_weight"]["low"]
    for constraint in config["tune"]["constraints"]:
        Constraint.parse(constraint)


def test_a_pair_job_tunes_refits_and_its_best_config_retrains_the_same_model(tmp_path):
    from simplug.cli.train_job import run_training
    from test_jobs import make_pair_job

    config = make_pair_job(tmp_path)
    with open(config, "a", encoding="utf-8") as fh:
        fh.write('\n[tune]\ntrials = 2\n\n[tune.space]\n"model.loss.scale" = {low = 5.0, high = 30.0}\n'
                 '"train.epochs" = {low = 2, high = 3}\n')
    report = run_tuning(str(config), echo=quiet)
    assert report["best"]["refit"]["samples"] == 40
    best = tmp_path / "run" / "tune" / "best_config.toml"
    retrained = run_training(str(best), output_dir=str(tmp_path / "again"), echo=quiet)
    tuned = report["held_out"]["tuned"]
    assert {k: tuned[k] for k in retrained["trained"]} == pytest.approx(retrained["trained"], abs=1e-6)


def test_ctrl_c_in_a_trial_reports_the_finished_trials_and_the_same_command_resumes(tmp_path, monkeypatch):
    from simplug.cli.tune_job import TuningJob
    from simplug.errors import TrainingInterrupted

    config = tune_job(tmp_path, trials=3)
    real_train_one = TuningJob.train_one
    calls = []

    def interrupted_second_trial(self, sections, report=None, deadline=None):
        calls.append(1)
        if len(calls) == 2:
            raise TrainingInterrupted("training interrupted (Ctrl-C) after 1 completed epoch(s)")
        return real_train_one(self, sections, report, deadline)

    monkeypatch.setattr(TuningJob, "train_one", interrupted_second_trial)
    printed: list[str] = []
    report = run_tuning(str(config), echo=printed.append)
    assert any("interrupted (Ctrl-C): 1 finished trial(s)" in line and "stored as failed" in line for line in printed)
    assert report["study"]["complete"] == 1 and report["best"]["trial"] == 0
    monkeypatch.setattr(TuningJob, "train_one", real_train_one)
    printed.clear()
    report = run_tuning(str(config), echo=printed.append)
    assert any("1 finished trial(s) before this run" in line for line in printed)
    study = optuna.load_study(study_name="simplug-tune", storage=f"sqlite:///{tmp_path / 'run' / 'tune' / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states.count("FAIL") == 1 and states.count("COMPLETE") + states.count("PRUNED") == 3


def test_ctrl_c_before_any_trial_finished_is_an_interruption_not_a_result(tmp_path, monkeypatch):
    from simplug.cli.tune_job import TuningJob

    config = tune_job(tmp_path, trials=2)

    def interrupted(self, sections, report=None, deadline=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(TuningJob, "train_one", interrupted)
    from simplug.errors import TrainingInterrupted

    with pytest.raises(TrainingInterrupted, match="before any trial finished.*same command resumes"):
        run_tuning(str(config), echo=quiet)


def blend_tune_job(tmp_path, input_weight, trials):
    config = make_group_job(tmp_path, loss='{name = "softmax", normalize = true, temperature = 0.1}')
    text = config.read_text().replace('head = {name = "skip_connection"}', 'head = {name = "blend", assignment_weight = 0.3}')
    config.write_text(text + f"""
[tune]
trials = {trials}
objective = "retrieval_r_precision"
constraints = []

[tune.space]
"model.head.input_weight" = {{low = {input_weight[0]}, high = {input_weight[1]}}}
"train.epochs" = {{low = 2, high = 3}}
""")
    return config


def test_a_trial_whose_settings_a_component_refuses_fails_and_the_search_goes_on(tmp_path):
    # input_weight + assignment_weight (0.3) above 1 is refused by the blend head: 0.7 to 0.8
    lines: list[str] = []
    report = run_tuning(str(blend_tune_job(tmp_path, (0.1, 0.8), trials=8)), echo=lines.append)
    refused = [line for line in lines if "its settings were refused" in line]
    assert refused and all("input_weight + assignment_weight must be at most 1" in line for line in refused)
    rows = list(csv.DictReader(open(tmp_path / "run" / "tune" / "trials.csv", encoding="utf-8")))
    failed = [r for r in rows if r["state"] == "fail"]
    assert len(failed) == len(refused) and all(float(r["model.head.input_weight"]) > 0.7 for r in failed)
    assert sum(r["state"] == "complete" for r in rows) >= 1
    chosen = tomllib.loads((tmp_path / "run" / "tune" / "best_config.toml").read_text())
    assert chosen["model"]["head"]["input_weight"] <= 0.7 and report["held_out"]["tuned"]


def test_a_space_whose_settings_are_all_refused_stops_with_the_reason(tmp_path):
    with pytest.raises(ConfigError, match=r"5 trials in a row had settings that were refused; the last: .*"
                                          r"input_weight \+ assignment_weight must be at most 1.*Narrow the ranges"):
        run_tuning(str(blend_tune_job(tmp_path, (0.8, 0.9), trials=8)), echo=quiet)


def test_the_configs_own_setting_is_the_first_trial_where_the_space_holds_it():
    from simplug.training.tuning import config_values

    sections = {"model": {**MODEL, "loss": "triplet"}, "train": {"epochs": 3, "batch_size": 48}}
    space = {"model.optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True},
             "model.loss.name": {"choices": ["triplet", "supervised_contrastive"]},
             "model.loss.margin": {"low": 0.2, "high": 1.0},            # the config leaves it to the default
             "train.epochs": {"low": 2, "high": 10, "step": 2},         # 3 is off the steps
             "train.batch_size": {"choices": [32, 64]}}                 # 48 is not a choice
    params = parse_space(space, sections, train_keys=TRAIN_KEYS)
    assert config_values(sections, params) == {"model.optimizer.lr": 0.001, "model.loss.name": "triplet"}
    sections["train"] = {"epochs": 4, "batch_size": 64}
    sections["model"]["optimizer"] = {"name": "adam", "lr": 0.1}       # outside the range
    assert config_values(sections, params) == {"model.loss.name": "triplet", "train.epochs": 4, "train.batch_size": 64}


def test_a_search_starts_from_the_configs_setting_once(tmp_path):
    config = tune_job(tmp_path, trials=2)
    lines: list[str] = []
    run_tuning(str(config), echo=lines.append)
    first = next(line for line in lines if line.startswith("trial 0 "))
    assert "[the config's own setting]" in first
    rows = list(csv.DictReader(open(tmp_path / "run" / "tune" / "trials.csv", encoding="utf-8")))
    assert {k: rows[0][k] for k in ("model.optimizer.lr", "model.loss.name", "model.loss.margin", "train.epochs")} == \
        {"model.optimizer.lr": "0.01", "model.loss.name": "triplet", "model.loss.margin": "0.5", "train.epochs": "3"}
    # extended: the config's setting is not tried again
    lines.clear()
    run_tuning(str(config), trials=3, echo=lines.append)
    rows = list(csv.DictReader(open(tmp_path / "run" / "tune" / "trials.csv", encoding="utf-8")))
    assert len(rows) == 3 and not any("[the config's own setting]" in line for line in lines)
