"""Hostile settings and interruptions of training: bad job values are refused when the file is
read; a diverging run stops and saves nothing; Ctrl-C saves the last completed epoch.

Nothing here waits on a clock: a Ctrl-C is raised (or signalled to the process itself) by the
loss at a chosen call, so it always lands in the same step.
"""
from __future__ import annotations

import json
import math
import os
import signal
import textwrap
import types

import pytest
import torch
from torch import nn

from conftest import run_cli
from data import group_points
from simplug import GroupSimilarityDataLoader, TrainableModel, hookimpl
from simplug.cli.job_config import load_job_config
from simplug.cli.train_job import run_training
from simplug.errors import ConfigError, TrainingDivergedError, TrainingInterrupted
from simplug.model.similarity_model import SimilarityModel
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.plugins.losses.triplet import TripletLoss
from simplug.registry import get_registry
from simplug.training.fit import fit
from test_jobs import make_group_job

FIT = dict(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


# ------------------------------------------------------------------ the job file
GOOD = {
    "data": 'kind = "groups"\ntrain = "missing-train.jsonl"\nvalidation = "missing-held.jsonl"',
    "model": 'encoder = "torch_module"\nloss = "triplet"\noptimizer = {name = "adam", lr = 0.001}',
    "train": "epochs = 3\nbatch_size = 8",
    "evaluate": "ks = [1, 5]",
    "output": 'dir = "run"',
}


def job_file(tmp_path, **sections: str):
    """A job whose data files do not exist: a config error must come before any data is read."""
    text = "".join(f"[{name}]\n{body}\n" for name, body in {**GOOD, **sections}.items() if body is not None)
    path = tmp_path / "job.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


BAD_VALUES = [
    ("train", "batch_size = 0", r"\[train\] batch_size must be a whole number >= 1, e.g. batch_size = 64, got 0"),
    ("train", "batch_size = -3", r"\[train\] batch_size must be a whole number >= 1.*got -3"),
    ("train", 'batch_size = "64"', r"\[train\] batch_size must be a whole number >= 1.*got \"64\""),
    ("train", "batch_size = 2.5", r"\[train\] batch_size must be .*got 2.5"),
    ("train", "epochs = 2.7", r"\[train\] epochs must be a whole number >= 1, e.g. epochs = 10, got 2.7"),
    ("train", 'epochs = "3"', r"\[train\] epochs must be .*got \"3\""),
    ("train", "epochs = -1", r"\[train\] epochs must be .*got -1"),
    ("train", "epochs = 0", r"\[train\] epochs must be .*got 0"),
    ("train", "epochs = true", r"\[train\] epochs must be .*got true"),
    ("train", "seed = -1", r"\[train\] seed must be a whole number from 0 to 4294967295, got -1"),
    ("train", "m_per_group = 1", r"\[train\] m_per_group must be a whole number >= 2 .*got 1"),
    ("train", 'group_sampling = "random"', r"\[train\] group_sampling must be \"uniform\" or \"proportional\""),
    ("train", 'validate = "yes"', r"\[train\] validate must be true or false, got \"yes\""),
    ("train", "num_workers = -1", r"\[train\] num_workers must be a whole number >= 0"),
    ("train", "early_stopping_patience = 1.5", r"\[train\] early_stopping_patience must be a whole number >= 0"),
    ("train", "epoch = 3", r"unknown key\(s\) epoch in \[train\] \(did you mean 'epoch' -> 'epochs'\?\)"),
    ("evaluate", "ks = [1, 0]", r"\[evaluate\] ks\[1\] must be greater than or equal to 1, got 0"),
    ("evaluate", "ks = []", r"\[evaluate\] ks must be a non-empty list of whole numbers >= 1"),
    ("evaluate", 'ks = "1"', r"\[evaluate\] ks must be a non-empty list .*got \"1\""),
    ("evaluate", 'candidates = "all"', r"\[evaluate\] candidates must be \"train\" or \"self\", got \"all\""),
    ("evaluate", "batch_size = 0", r"\[evaluate\] batch_size must be a whole number >= 1"),
    ("data", 'kind = "triples"\ntrain = "t.jsonl"\nvalidation = "v.jsonl"', r"\[data\] kind must be \"pairs\" or \"groups\""),
    ("data", 'kind = "groups"\ntrain = "t.jsonl"', r"\[data\] needs validation: a path"),
    ("data", 'kind = "groups"\ntrain = 3\nvalidation = "v.jsonl"', r"\[data\] train must be a path.*got 3"),
    ("output", 'dir = ""', r"\[output\] dir must be a directory path"),
    ("model", 'loss = "triplet"\noptimizer = {name = "adam", lr = "0.1"}',
     r"\[model\] optimizer.lr must be a positive finite number, e.g. lr = 0.001, got \"0.1\""),
    ("model", 'loss = "triplet"\noptimizer = {name = "adam", lr = -0.1}', r"\[model\] optimizer.lr must be .*got -0.1"),
    ("model", 'loss = "triplet"\noptimizer = {name = "adam", lr = 0}', r"\[model\] optimizer.lr must be .*got 0"),
    ("model", 'loss = "triplet"\noptimizer = {name = "adam", lr = inf}', r"\[model\] optimizer.lr must be .*got inf"),
    ("model", 'loss = "triplet"\noptimizer = {name = "adam", lr = nan}', r"\[model\] optimizer.lr must be .*got nan"),
    ("model", 'loss = "triplet"\noptimizer = {name = "adam", lr = true}', r"\[model\] optimizer.lr must be .*got true"),
    ("model", 'loss = "triplet"\noptimizer = {name = "sgd", args = {lr = -1}}', r"\[model\] optimizer.args.lr must be"),
]


@pytest.mark.parametrize("section, body, expected", BAD_VALUES, ids=[f"{s}:{b.splitlines()[-1]}" for s, b, _ in BAD_VALUES])
def test_bad_values_are_named_with_file_section_key_value_and_what_is_allowed(tmp_path, section, body, expected):
    path = job_file(tmp_path, **{section: body})
    with pytest.raises(ConfigError, match=expected) as err:
        load_job_config(path)
    assert str(err.value).startswith(f"{path}: ")


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    path = job_file(tmp_path, train="epochs = 2.7\nbatch_size = -3", evaluate="ks = [0]")
    with pytest.raises(ConfigError) as err:
        load_job_config(path)
    assert all(f"[{key}" in str(err.value) for key in ("train] epochs", "train] batch_size", "evaluate] ks[0]"))


def test_tune_table_and_select_best_are_allowed(tmp_path):
    job = load_job_config(job_file(tmp_path, train='epochs = 4\nselect_best = "r_precision"',
                                   tune='trials = 5\nspace = {lr = [0.001, 0.1]}'))
    assert job.train == {"epochs": 4, "select_best": "r_precision"}
    assert job.tune == {"trials": 5, "space": {"lr": [0.001, 0.1]}}


def test_values_keep_their_type_and_unset_keys_stay_unset(tmp_path):
    job = load_job_config(job_file(tmp_path, train="epochs = 4\nvalidate = false\ncache = false"))
    assert job.train == {"epochs": 4, "validate": False, "cache": False}
    assert type(job.train["epochs"]) is int and job.evaluate == {"ks": [1, 5]}


def test_a_bad_value_stops_run_training_before_any_data_is_read(tmp_path):
    # the data files do not exist: reading them first would give a data error instead
    with pytest.raises(ConfigError, match=r"\[train\] batch_size must be a whole number >= 1.*got -3"):
        run_training(job_file(tmp_path, train="batch_size = -3"), echo=lambda _: None)
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("epochs", [0, -2, 2.5])
def test_an_epochs_override_is_checked(tmp_path, epochs):
    with pytest.raises(ConfigError, match=f"--epochs must be a positive int, got {epochs!r}"):
        run_training(job_file(tmp_path), epochs=epochs, echo=lambda _: None)


def test_the_command_prints_the_config_error_without_a_traceback(tmp_path):
    result = run_cli("train", job_file(tmp_path, train='epochs = "3"'))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert '[train] epochs must be a whole number >= 1, e.g. epochs = 10, got "3"' in result.stderr


def encoder(dim: int = 12, out: int = 16) -> TorchModuleEncoder:
    torch.manual_seed(0)
    return TorchModuleEncoder(nn.Sequential(nn.Linear(dim, out), nn.Tanh()), input_size=dim, trainable=False)


def model_config(lr: float = 1e-2, loss=None) -> dict:
    return {"encoder": encoder(), "head": {"name": "skip_connection", "n_layers": 2},
            "loss": loss or {"name": "triplet", "mining": "all"}, "optimizer": {"name": "adam", "lr": lr}}


@pytest.mark.parametrize("lr", ["0.1", -1.0, 0, float("nan"), float("inf"), None])
def test_the_python_api_checks_the_learning_rate_when_the_model_is_built(lr):
    with pytest.raises(ConfigError, match="optimizer lr must be a positive finite number"):
        TrainableModel.from_config(model_config(lr=lr))


# ------------------------------------------------------------------ divergence
def loader(batch_size: int = 24):
    return GroupSimilarityDataLoader(group_points(per_group=8), batch_size=batch_size, shuffle=False)


def test_a_huge_learning_rate_is_stopped_as_divergence_and_never_saved(tmp_path):
    model = TrainableModel.from_config(model_config(lr=1e30))
    with pytest.raises(TrainingDivergedError) as err:
        fit(model, train_dataloader=loader(), **FIT)
    message = str(err.value)
    # the huge weights show as a NaN loss in epoch 1 here (tanh and two head layers overflow)
    assert "training diverged: the loss became nan at train step 1: the largest trainable weight is" in message
    assert "lr = 1e+30 now" in message and "The model was not saved" in message
    assert model.divergence is not None and model.last_completed_epoch == 0
    with pytest.raises(TrainingDivergedError, match="a diverged model is not saved"):
        model.save_servable(str(tmp_path / "model"))
    assert not (tmp_path / "model").exists()


class ExplodingTriplet(TripletLoss):
    """Triplet loss times 10^4 more at every training call: an exploding loss, deterministically."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def forward(self, *args, **kwargs):
        value = super().forward(*args, **kwargs)
        if self.training:
            value = value * 1e4 ** self.calls + 1.0  # + 1: never 0, whatever the batch
            self.calls += 1
        return value


def test_an_exploding_loss_is_stopped_as_divergence():
    model = TrainableModel.from_config(model_config(loss=ExplodingTriplet(mining="all")))
    with pytest.raises(TrainingDivergedError, match=r"training diverged: the training loss rose to .* at step 1, from "
                                                    r".* at the first step \(more than 1000 times\)"):
        fit(model, train_dataloader=loader(), **FIT)


def test_non_finite_weights_are_named_as_divergence_not_as_bad_data():
    import pytorch_lightning as pl

    class Poison(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == 1:
                with torch.no_grad():
                    next(module.model.head.parameters()).view(-1)[0] = float("inf")

    model = TrainableModel.from_config(model_config())
    with pytest.raises(TrainingDivergedError, match=r"training diverged: the loss became nan at train step 1: a "
                                                    r"trainable weight became inf"):
        fit(model, train_dataloader=loader(), callbacks=[Poison()], **FIT)
    with pytest.raises(TrainingDivergedError):
        model.save_servable("never-written")
    assert not os.path.exists("never-written")


def test_healthy_training_is_not_flagged_and_keeps_each_epoch():
    model = TrainableModel.from_config(model_config())
    fit(model, train_dataloader=loader(), **FIT)
    assert model.divergence is None and model.last_completed_epoch == 3


# ------------------------------------------------------------------ Ctrl-C
def trainable_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.model.state_dict().items()}


def test_ctrl_c_in_training_keeps_the_last_completed_epoch():
    import pytorch_lightning as pl

    class PressCtrlC(pl.Callback):
        """Records the weights after epoch 1, then presses Ctrl-C in epoch 2's second batch."""

        def on_train_epoch_end(self, trainer, module):
            self.after_epoch_1 = self.__dict__.get("after_epoch_1") or trainable_state(module)

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 1:
                raise KeyboardInterrupt

    press = PressCtrlC()
    model = TrainableModel.from_config(model_config())
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match=r"training interrupted \(Ctrl-C\) after 1 completed epoch") as err:
        fit(model, train_dataloader=loader(), callbacks=[press], **FIT)
    assert err.value.epochs_completed == 1
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning leaves SIGINT ignored; fit puts it back
    changed = trainable_state(model)
    assert any(not torch.equal(changed[k], press.after_epoch_1[k]) for k in changed)  # epoch 2 had moved on
    assert model.restore_last_completed_epoch() == 1
    restored = trainable_state(model)
    assert all(torch.equal(restored[k], press.after_epoch_1[k]) for k in restored)


def test_ctrl_c_in_the_first_epoch_has_nothing_to_keep():
    import pytorch_lightning as pl

    class PressCtrlC(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            raise KeyboardInterrupt

    model = TrainableModel.from_config(model_config())
    with pytest.raises(TrainingInterrupted, match="before the first epoch completed") as err:
        fit(model, train_dataloader=loader(), callbacks=[PressCtrlC()], **FIT)
    assert err.value.epochs_completed == 0 and model.restore_last_completed_epoch() == 0


class InterruptingTriplet(TripletLoss):
    """Triplet loss that presses Ctrl-C at its ``at_call``-th training call: raising
    KeyboardInterrupt, or sending SIGINT to its own process (a real Ctrl-C) with ``signal_it``."""

    def __init__(self, at_call: int, signal_it: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.at_call, self.signal_it, self.calls = at_call, signal_it, 0

    def forward(self, *args, **kwargs):
        if self.training:
            self.calls += 1
            if self.calls == self.at_call:
                if self.signal_it:
                    signal.raise_signal(signal.SIGINT)
                else:
                    raise KeyboardInterrupt
        return super().forward(*args, **kwargs)


def use_loss(job_path, loss: str, lr: float | None = None) -> None:
    text = job_path.read_text(encoding="utf-8")
    text = text.replace('loss = {name = "triplet", mining = "all", margin = 0.5}', f"loss = {loss}")
    if lr is not None:
        text = text.replace("lr = 0.01", f"lr = {lr}")
    job_path.write_text(text, encoding="utf-8")


@pytest.fixture
def interrupting_loss(fresh_registry):
    module = types.ModuleType("interrupting_loss_plugin")

    def register_losses(register):
        register("interrupting_triplet", InterruptingTriplet)

    module.register_losses = hookimpl(register_losses)
    get_registry().add_plugin(module, name="interrupting", distribution="simplug-attack-tests", version="1.0")


def test_run_training_saves_the_last_completed_epoch_on_ctrl_c(tmp_path, interrupting_loss):
    job = make_group_job(tmp_path)
    # 72 samples in batches of 24: calls 1-3 are epoch 1, call 5 is epoch 2's second batch
    use_loss(job, '{name = "interrupting_triplet", at_call = 5, mining = "all", margin = 0.5}')
    with pytest.raises(TrainingInterrupted) as err:
        run_training(str(job), echo=lambda _: None)
    model_dir = tmp_path / "run" / "model"
    assert err.value.epochs_completed == 1
    assert (f"training interrupted (Ctrl-C) during epoch 2: saved the model of epoch 1, the last completed one, "
            f"to {model_dir}") in str(err.value)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["status"] == "interrupted" and report["epochs_completed"] == 1
    assert [row["epoch"] for row in report["epochs"]] == [1] and report["model"] == str(model_dir)
    loaded = SimilarityModel.load(str(model_dir))
    assert loaded.encode([[0.0] * 8]).shape == (1, 8)


def test_run_training_refuses_to_save_a_diverged_model(tmp_path):
    job = make_group_job(tmp_path)
    use_loss(job, '{name = "triplet", mining = "all", margin = 0.5}', lr=1e30)
    with pytest.raises(TrainingDivergedError) as err:
        run_training(str(job), echo=lambda _: None)
    assert f"(the learning rate is [model] optimizer.lr in {job})" in str(err.value)
    assert not (tmp_path / "run" / "model").exists()
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["status"] == "diverged" and report["model"] is None and "training diverged" in report["error"]


def test_a_real_ctrl_c_ends_simplug_train_with_130_and_a_saved_model(tmp_path):
    """SIGINT sent by the process to itself at a fixed step: the real signal path, no timing."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "ctrl_c_loss.py").write_text(textwrap.dedent("""
        from simplug import hookimpl
        from test_attack_training import InterruptingTriplet

        @hookimpl
        def register_losses(register):
            register("interrupting_triplet", InterruptingTriplet)
    """), encoding="utf-8")
    info = site / "ctrl_c_loss-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ctrl-c-loss\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[simplug]\nmain = ctrl_c_loss\n", encoding="utf-8")
    job = make_group_job(tmp_path)
    use_loss(job, '{name = "interrupting_triplet", at_call = 5, signal_it = true, mining = "all", margin = 0.5}')
    tests = os.path.dirname(__file__)
    result = run_cli("train", str(job), env_extra={
        "PYTHONPATH": os.pathsep.join([str(site), tests, os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert (f"error: training interrupted (Ctrl-C) during epoch 2: saved the model of epoch 1, the last completed "
            f"one, to {tmp_path / 'run' / 'model'}") in result.stderr
    assert math.isfinite(float(SimilarityModel.load(str(tmp_path / "run" / "model")).encode([[1.0] * 8]).sum()))
