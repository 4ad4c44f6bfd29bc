"""Data files, held-out retrieval scoring, and the train / evaluate / encode commands."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simplug.data.readers import read_objects, read_samples
from simplug.errors import ConfigError, DataError
from simplug.cli.job_config import load_job_config
from simplug.evaluation.heldout import HeldOutScorer, retrieval_task
from simplug.evaluation.retrieval import RetrievalTask
from simplug.data.samples import SimilarityGroupSample, SimilarityPairSample

from conftest import run_cli


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------ data files
def test_group_labels_are_shared_between_splits(tmp_path):
    ids: dict = {}
    train = read_samples(write_lines(tmp_path / "t.jsonl", [{"text": "a", "cat": "x"}, {"text": "b", "cat": "y"}]),
                         "groups", {"obj": "text", "group": "cat"}, ids)
    held = read_samples(write_lines(tmp_path / "v.jsonl", [{"text": "c", "cat": "y"}, {"text": "d", "cat": "z"}]),
                        "groups", {"obj": "text", "group": "cat"}, ids)
    assert [s.group for s in train] == [0, 1]
    assert [s.group for s in held] == [1, 2]


def test_pairs_from_csv_with_defaults(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("obj_a,obj_b,score\nq1,a1,0.5\nq2,a2,\n", encoding="utf-8")
    pairs = read_samples(str(path), "pairs")
    assert pairs == [SimilarityPairSample("q1", "a1", 0.5, 0), SimilarityPairSample("q2", "a2", 1.0, 0)]


def test_missing_field_names_line_and_field(tmp_path):
    path = write_lines(tmp_path / "g.jsonl", [{"obj": "a", "group": 1}, {"obj": "b"}])
    with pytest.raises(DataError, match=r"line 2 has no field 'group'"):
        read_samples(path, "groups")


def test_bad_inputs_are_named(tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"obj": "ok", "group": 1}\n{"obj": "caf\xe9", "group": 2}\n')
    with pytest.raises(DataError, match="line 2 is not valid UTF-8"):
        read_samples(str(bad), "groups")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty data split"):
        read_samples(str(empty), "groups")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"obj": 1, "group": 1}\n{"obj": \n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        read_samples(str(broken), "groups")
    with pytest.raises(DataError, match="unknown data field 'text'"):
        read_samples(str(broken), "groups", {"text": "obj"})
    scores = write_lines(tmp_path / "s.jsonl", [{"obj_a": "q", "obj_b": "a", "score": "high"}])
    with pytest.raises(DataError, match="'score' must be a number"):
        read_samples(scores, "pairs")


def test_read_objects_formats(tmp_path):
    (tmp_path / "t.txt").write_text("one\n\ntwo\n", encoding="utf-8")
    assert read_objects(str(tmp_path / "t.txt")) == ["one", "two"]
    np.save(tmp_path / "x.npy", np.arange(6, dtype=np.float32).reshape(3, 2))
    assert len(read_objects(str(tmp_path / "x.npy"))) == 3
    (tmp_path / "o.json").write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(DataError, match="JSON list"):
        read_objects(str(tmp_path / "o.json"))


# ------------------------------------------------------------------ retrieval tasks
# (the scores themselves are checked against a slow reference in test_ranking_engine.py)
def test_k_larger_than_candidates_is_refused():
    held = [SimilarityGroupSample([float(i), 0.0], i % 2) for i in range(4)]
    train = held[:3]
    with pytest.raises(DataError, match="recall@10 needs at least k=10 candidates per query but there are only 3:"):
        HeldOutScorer(retrieval_task("groups", held, train), ks=(1, 10)).score(identity_model())


def test_pair_task_relevance_and_self_exclusion():
    pairs = [SimilarityPairSample("q1", "a1"), SimilarityPairSample("q1", "a2"), SimilarityPairSample("q2", "a3", score=0.0)]
    task = RetrievalTask.from_pairs(pairs, extra_candidates=["a9", "a1"])
    assert task.queries == ["q1", "q2"] and task.candidates == ["a1", "a2", "a3", "a9"]
    assert task.relevant(torch.tensor([0, 1])).tolist() == [[True, True, False, False], [False, False, False, False]]
    assert not task.exclude_self
    groups = [SimilarityGroupSample(f"o{i}", i % 2) for i in range(4)]
    task = RetrievalTask.from_groups(groups, groups, exclude_self=True)
    # the engine leaves each query's own entry out (of the ranking and of the relevant set)
    assert task.exclude_self and task.relevant(torch.tensor([0, 1])).tolist() == [[True, False, True, False],
                                                                                [False, True, False, True]]


def test_train_records_where_each_held_out_object_sits_in_the_cached_splits():
    train = [SimilarityPairSample("q1", "a1"), SimilarityPairSample("q2", "a2")]
    held = [SimilarityPairSample("q3", "a2"), SimilarityPairSample("q3", "a3")]
    task = retrieval_task("pairs", held, train)
    # records of a pair split: every obj_a, then every obj_b
    assert task.queries == ["q3"] and task.query_records == [("validation", 0)]
    assert task.candidates == ["a2", "a3", "a1"]
    assert task.candidate_records == [("validation", 2), ("validation", 3), ("train", 2)]
    groups = [SimilarityGroupSample(f"o{i}", i % 2) for i in range(3)]
    task = retrieval_task("groups", groups[:1], groups)
    assert task.query_records == [("validation", 0)] and task.candidate_records == [("train", i) for i in range(3)]


# ------------------------------------------------------------------ job config
def test_job_config_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[data]\nkind = "groups"\ntrain = "t.jsonl"\nvalidation = "v.jsonl"\n[model]\n[train]\nepoch = 3\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) epoch in \[train\]"):
        load_job_config(str(path))
    path.write_text('[data]\nkind = "triples"\n[model]\n')
    with pytest.raises(ConfigError, match='kind must be "pairs" or "groups"'):
        load_job_config(str(path))
    path.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_job_config(str(path))


# ------------------------------------------------------------------ commands end to end
def identity_model():
    from torch import nn

    from simplug import TrainableModel
    from simplug.plugins.encoders.torch_module import TorchModuleEncoder

    encoder = TorchModuleEncoder(nn.Identity(), embedding_size=2)
    return TrainableModel.from_config({"encoder": encoder, "head": "empty", "loss": "triplet"}).model


def make_group_job(tmp_path, loss='{name = "triplet", mining = "all", margin = 0.5}', encoder=None):
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 8, generator=gen) * 2

    def rows(n, seed):
        g = torch.Generator().manual_seed(seed)
        return [{"x": (centres[k] + torch.randn(8, generator=g)).tolist(), "label": f"g{k}"} for k in range(6) for _ in range(n)]

    write_lines(tmp_path / "train.jsonl", rows(12, 1))
    write_lines(tmp_path / "held.jsonl", rows(4, 2))
    spec = json.dumps({"type": "Linear", "args": {"in_features": 8, "out_features": 8, "bias": True}})
    encoder = encoder or f"{{name = \"torch_module\", module = {toml_inline(spec)}, embedding_size = 8}}"
    (tmp_path / "job.toml").write_text(f"""
[data]
kind = "groups"
train = "train.jsonl"
validation = "held.jsonl"
fields = {{obj = "x", group = "label"}}

[model]
encoder = {encoder}
head = {{name = "skip_connection"}}
loss = {loss}
optimizer = {{name = "adam", lr = 0.01}}

[train]
epochs = 3
batch_size = 24

[evaluate]
ks = [1, 5]

[output]
dir = "run"
""", encoding="utf-8")
    return tmp_path / "job.toml"


def toml_inline(spec_json: str) -> str:
    """A JSON object as a TOML inline table (the spec has only strings, numbers, bools, lists)."""
    value = json.loads(spec_json)

    def render(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {render(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(render(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v)

    return render(value)


def test_train_command_end_to_end(tmp_path):
    config = make_group_job(tmp_path)
    result = run_cli("train", str(config))
    assert result.returncode == 0, result.stderr
    assert "held-out metrics" in result.stdout and "untrained" in result.stdout and "trained" in result.stdout
    run = tmp_path / "run"
    report = json.loads((run / "report.json").read_text())
    assert report["data"] == {"kind": "groups", "train": 72, "held_out": 24, "queries": 24, "candidates": 72,
                              "protocol": report["data"]["protocol"]}
    assert [row["epoch"] for row in report["epochs"]] == [1, 2, 3]
    names = ["retrieval_precision@1", "retrieval_reciprocal_rank", "retrieval_r_precision", "recall@1", "recall@5"]
    assert list(report["trained"]) == names and list(report["untrained"]) == names
    assert report["headline"] == "retrieval_r_precision" and all(names[2] in row for row in report["epochs"])
    assert all(line.split()[0] in names for line in result.stdout.split("held-out metrics")[1].splitlines()[3:8])
    assert (run / "training.png").stat().st_size > 1000
    assert list((run / "logs").rglob("metrics.csv"))
    # the saved model gives the reported numbers again through `simplug evaluate`, which reads
    # the data as the model was trained on (kind and field names from the manifest)
    evaluated = run_cli("evaluate", str(run / "model"), str(tmp_path / "held.jsonl"), "--candidates",
                        str(tmp_path / "train.jsonl"), "--json", "--metric", "retrieval_r_precision",
                        "--metric", "recall:k=5")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout) == pytest.approx(
        {"retrieval_r_precision": report["trained"]["retrieval_r_precision"], "recall@5": report["trained"]["recall@5"]},
        abs=1e-6)
    # each held-out item against the others, leaving itself out: the Evaluator's number
    from simplug import Evaluator

    alone = run_cli("evaluate", str(run / "model"), str(tmp_path / "held.jsonl"), "--json")
    assert alone.returncode == 0, alone.stderr
    held = read_samples(str(tmp_path / "held.jsonl"), "groups", {"obj": "x", "group": "label"})
    expected = Evaluator(["retrieval_precision", "retrieval_r_precision"]).evaluate(held, str(run / "model"))
    scores = json.loads(alone.stdout)
    assert {k: scores[k] for k in expected} == pytest.approx(expected, abs=1e-9)
    assert scores["retrieval_precision@1"] > 0.5
    table = run_cli("evaluate", str(run / "model"), str(tmp_path / "held.jsonl"))
    assert "other held-out items" in table.stdout and "retrieval_r_precision" in table.stdout
    # and encodes a file of objects
    np.save(tmp_path / "objects.npy", np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32))
    encoded = run_cli("encode", str(run / "model"), str(tmp_path / "objects.npy"), "-o", str(tmp_path / "out.npy"))
    assert encoded.returncode == 0, encoded.stderr
    assert np.load(tmp_path / "out.npy").shape == (5, 8)


def test_train_command_refuses_bad_configs_clearly(tmp_path):
    config = make_group_job(tmp_path, loss='{name = "contrastive"}')
    result = run_cli("train", str(config))
    assert result.returncode == 1
    assert "is a pair loss" in result.stderr and "Traceback" not in result.stderr
    config = make_group_job(tmp_path, encoder='{name = "no_such_encoder"}')
    result = run_cli("train", str(config))
    assert result.returncode == 1 and "torch_module" in result.stderr and "sentence_transformer" in result.stderr
    config = make_group_job(tmp_path)
    (tmp_path / "held.jsonl").write_text("", encoding="utf-8")
    result = run_cli("train", str(config))
    assert result.returncode == 1 and "empty data split" in result.stderr


def test_evaluate_and_encode_refuse_a_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "x.txt").write_text("hello\n", encoding="utf-8")
    result = run_cli("encode", str(tmp_path), str(tmp_path / "x.txt"), "-o", str(tmp_path / "o.npy"))
    assert result.returncode == 1 and "not a simplug model" in result.stderr.lower() and "Traceback" not in result.stderr


def test_cli_argument_mistakes_are_named(tmp_path):
    (tmp_path / "x.txt").write_text("hello\n", encoding="utf-8")
    result = run_cli("encode", str(tmp_path), str(tmp_path / "x.txt"), "-o", str(tmp_path / "out.txt"))
    assert result.returncode == 1 and "give a path ending in .npy" in result.stderr
    result = run_cli("evaluate", str(tmp_path), str(tmp_path / "x.txt"), "--fields", "obj:text")
    assert result.returncode == 1 and "--fields takes name=column pairs" in result.stderr


def test_evaluate_metric_option_is_parsed_and_checked():
    from simplug.cli.evaluate_job import parse_metric
    from simplug.evaluation.retrieval import build_metrics

    assert parse_metric("recall:k=5") == {"name": "recall", "k": 5}
    assert parse_metric("knn_accuracy:k=3,distance_metric_name=euclidean") == {
        "name": "knn_accuracy", "k": 3, "distance_metric_name": "euclidean"}
    with pytest.raises(ConfigError, match="arg=value pairs"):
        parse_metric("recall:5")
    with pytest.raises(ConfigError, match="pair_auc scores labelled pairs"):
        build_metrics(["pair_auc"])
    with pytest.raises(ConfigError, match="asked for twice"):
        build_metrics(["recall", {"name": "recall", "k": 1}])


def test_train_cache_dir_is_built_once_reused_and_rebuilt_for_a_changed_encoder(tmp_path):
    from simplug.cli.train_job import run_training

    config = make_group_job(tmp_path)
    text = config.read_text(encoding="utf-8").replace("batch_size = 24\n", 'batch_size = 24\ncache_dir = "cache"\n')
    config.write_text(text, encoding="utf-8")
    printed: list[str] = []
    first = run_training(str(config), epochs=1, echo=printed.append)
    rows = tmp_path / "cache" / "default.rows"
    assert first["cache"]["default"].startswith(f"built {rows}") and rows.exists()
    assert any(line.startswith("cache of encoder 'default': built") for line in printed)
    stamp = rows.stat().st_mtime_ns
    second = run_training(str(config), epochs=1, echo=printed.append)
    assert second["cache"]["default"].startswith(f"reused {rows}") and rows.stat().st_mtime_ns == stamp
    assert second["untrained"] == first["untrained"]  # read from the cache rows either way
    # another encoder (no bias): the fingerprint differs, so the rows are encoded again
    config.write_text(text.replace('"bias": true', '"bias": false').replace("bias = true", "bias = false"), encoding="utf-8")
    assert "bias = false" in config.read_text(encoding="utf-8")
    with pytest.warns(UserWarning, match="rebuilding the cache"):
        third = run_training(str(config), epochs=1, echo=printed.append)
    assert third["cache"]["default"].startswith(f"rebuilt {rows}") and "encoder" in third["cache"]["default"]


def make_pair_job(tmp_path):
    """Pairs whose obj_b repeat within and across the splits, so candidates are shared."""
    gen = torch.Generator().manual_seed(0)
    answers = (torch.randn(10, 8, generator=gen) * 2).tolist()

    def rows(n, seed):
        g = torch.Generator().manual_seed(seed)
        return [{"q": (torch.tensor(answers[i % 10]) + torch.randn(8, generator=g)).tolist(), "a": answers[i % 10]}
                for i in range(n)]

    write_lines(tmp_path / "train.jsonl", rows(40, 1))
    write_lines(tmp_path / "held.jsonl", rows(15, 2))
    spec = toml_inline(json.dumps({"type": "Linear", "args": {"in_features": 8, "out_features": 8, "bias": True}}))
    (tmp_path / "job.toml").write_text(f"""
[data]
kind = "pairs"
train = "train.jsonl"
validation = "held.jsonl"
fields = {{obj_a = "q", obj_b = "a"}}

[model]
encoder = {{name = "torch_module", module = {spec}, embedding_size = 8}}
head = {{name = "skip_connection"}}
loss = {{name = "multiple_negatives_ranking"}}

[train]
epochs = 1
batch_size = 8

[evaluate]
ks = [1, 5]

[output]
dir = "run"
""", encoding="utf-8")
    return tmp_path / "job.toml"


@pytest.mark.parametrize("kind", ["groups", "pairs"])
def test_train_scores_the_untrained_encoder_from_the_cache_rows(tmp_path, kind, monkeypatch):
    """The frozen encoder's outputs of the held-out task are the cache's rows: no second pass."""
    from simplug.cli.train_job import run_training
    from simplug.model.similarity_model import SimilarityModel

    config = make_group_job(tmp_path) if kind == "groups" else make_pair_job(tmp_path)
    uncached = tmp_path / "uncached.toml"
    uncached.write_text(config.read_text(encoding="utf-8").replace("[train]\n", '[train]\ncache = "none"\n'), encoding="utf-8")
    encoded = run_training(str(uncached), output_dir=str(tmp_path / "encoded"), epochs=1, echo=lambda line: None)
    assert encoded["cache"] == {}

    def second_pass(*args, **kwargs):
        raise AssertionError("the held-out scorer encoded objects the cache already holds")

    monkeypatch.setattr(SimilarityModel, "encoder_outputs", second_pass)
    monkeypatch.setattr(SimilarityModel, "encode", second_pass)  # nor the nearest-example lookup of pairs
    printed: list[str] = []
    cached = run_training(str(config), output_dir=str(tmp_path / "cached"), epochs=1, echo=printed.append)
    assert cached["cache"]["default"].startswith("built")
    assert cached["untrained"] == pytest.approx(encoded["untrained"], abs=1e-6)
    assert set(cached["baselines"]) == ({"untrained encoder"} if kind == "groups" else {"untrained encoder", "nearest example"})
    for name, column in encoded["baselines"].items():
        assert cached["baselines"][name] == pytest.approx(column, abs=1e-6), name
    assert any(line.startswith("untrained: retrieval_") for line in printed)


def test_train_cache_dir_without_a_cache_is_refused(tmp_path):
    from simplug.cli.train_job import run_training

    config = make_group_job(tmp_path)
    text = config.read_text(encoding="utf-8").replace("batch_size = 24\n", 'batch_size = 24\ncache = "none"\ncache_dir = "cache"\n')
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="cache_dir is set but nothing is cached"):
        run_training(str(config), epochs=1, echo=lambda line: None)


def test_the_reported_scores_are_the_saved_models_scores_also_with_select_best(tmp_path):
    """The before/after table must describe the model that was saved: with best-epoch selection the
    cache holds only the carved training share, and the held-out task must not read wrong rows."""
    from simplug.cli.train_job import run_training
    from simplug.data.readers import read_samples
    from simplug.evaluation.heldout import HeldOutScorer, retrieval_task
    from simplug.serving import SimilarityModel

    job = make_group_job(tmp_path)
    job.write_text(job.read_text().replace("[train]\n", "[train]\nselect_best = true\nvalidation_share = 0.25\n"))
    report = run_training(str(job), output_dir=str(tmp_path / "run"), echo=lambda *_: None)
    ids: dict = {}
    train = read_samples(str(tmp_path / "train.jsonl"), "groups", {"obj": "x", "group": "label"}, ids)
    held = read_samples(str(tmp_path / "held.jsonl"), "groups", {"obj": "x", "group": "label"}, ids)
    saved = SimilarityModel.load(report["model"])
    fresh = HeldOutScorer(retrieval_task("groups", held, train), ks=(1, 5))
    assert report["trained"] == pytest.approx(fresh.score(saved), abs=1e-6)
    assert report["untrained"] == pytest.approx(fresh.score(saved, heads=False), abs=1e-6)


def test_a_loss_with_a_weight_per_group_gets_the_number_of_groups_from_the_data(tmp_path):
    from simplug.cli.train_job import run_training
    from simplug.errors import SimplugError

    job = make_group_job(tmp_path, loss='{name = "softmax", normalize = true, temperature = 0.1}')
    report = run_training(str(job), output_dir=str(tmp_path / "run"), echo=lambda *_: None)
    manifest = json.loads((tmp_path / "run" / "model" / "manifest.json").read_text())
    assert manifest["training"]["loss"]["config"]["num_groups"] == 6  # labels g0..g5
    assert len(report["epochs"]) == 3
    # a number stated in the config is kept, and a wrong one is named
    job.write_text(job.read_text().replace("temperature = 0.1}", "temperature = 0.1, num_groups = 4}"))
    with pytest.raises(SimplugError, match=r"num_groups=4.*set num_groups"):
        run_training(str(job), output_dir=str(tmp_path / "run2"), echo=lambda *_: None)
