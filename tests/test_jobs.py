"""Data files, held-out retrieval scoring, and the train / evaluate / encode commands."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simplug.data.readers import read_objects, read_samples
from simplug.errors import ConfigError, DataError
from simplug.cli.job_config import load_job_config
from simplug.evaluation.retrieval import RetrievalTask, score_rankings
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


# ------------------------------------------------------------------ retrieval scoring
def slow_scores(similarity, relevant, ks):
    """Per query, with Python lists: the textbook definitions."""
    totals = {"precision@1": [], "reciprocal_rank": [], "r_precision": [], **{f"recall@{k}": [] for k in ks}}
    for i in range(similarity.shape[0]):
        rel = relevant[i].tolist()
        r = sum(rel)
        if r == 0:
            continue
        ranked = sorted(range(len(rel)), key=lambda j: (-similarity[i, j].item(), j))
        hits = [rel[j] for j in ranked]
        totals["precision@1"].append(float(hits[0]))
        totals["reciprocal_rank"].append(1.0 / (hits.index(True) + 1))
        totals["r_precision"].append(sum(hits[:r]) / r)
        for k in ks:
            totals[f"recall@{k}"].append(float(any(hits[:k])))
    return {name: sum(v) / len(v) for name, v in totals.items()}


@pytest.mark.parametrize("block_size", [1, 7, 1000])
def test_scores_match_slow_reference_in_any_block_size(block_size):
    gen = torch.Generator().manual_seed(3)
    queries, candidates = torch.randn(40, 6, generator=gen), torch.randn(90, 6, generator=gen)
    query_groups = torch.randint(0, 6, (40,), generator=gen)
    candidate_groups = torch.randint(0, 5, (90,), generator=gen)  # group 5 queries have no relevant candidate
    relevance = query_groups[:, None] == candidate_groups[None, :]
    similarity = lambda a, b: a @ b.T  # noqa: E731
    got = score_rankings(queries, candidates, lambda rows: relevance[rows], similarity, ks=(1, 3, 10), block_size=block_size)
    want = slow_scores(queries @ candidates.T, relevance, (1, 3, 10))
    assert got == pytest.approx(want, abs=1e-9)


def test_k_larger_than_candidates_is_refused():
    x = torch.randn(3, 2)
    with pytest.raises(DataError, match="recall@10 asks for more results than the 3 candidates"):
        score_rankings(x, x, lambda rows: torch.ones(len(rows), 3, dtype=torch.bool), lambda a, b: a @ b.T, ks=(1, 10))


def test_pair_task_relevance_and_self_exclusion():
    pairs = [SimilarityPairSample("q1", "a1"), SimilarityPairSample("q1", "a2"), SimilarityPairSample("q2", "a3", score=0.0)]
    task = RetrievalTask.from_pairs(pairs, extra_candidates=["a9", "a1"])
    assert task.queries == ["q1", "q2"] and task.candidates == ["a1", "a2", "a3", "a9"]
    assert task.relevant(torch.tensor([0, 1])).tolist() == [[True, True, False, False], [False, False, False, False]]
    groups = [SimilarityGroupSample(f"o{i}", i % 2) for i in range(4)]
    mask = RetrievalTask.from_groups(groups, groups, exclude_self=True).relevant(torch.tensor([0, 1, 2, 3]))
    assert mask.tolist() == [[False, False, True, False], [False, False, False, True],
                             [True, False, False, False], [False, True, False, False]]


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
    assert set(report["trained"]) == {"precision@1", "reciprocal_rank", "r_precision", "recall@1", "recall@5"}
    assert (run / "training.png").stat().st_size > 1000
    assert list((run / "logs").rglob("metrics.csv"))
    # the saved model gives the reported numbers again through `simplug evaluate`
    evaluated = run_cli("evaluate", str(run / "model"), str(tmp_path / "held.jsonl"), "--candidates",
                        str(tmp_path / "train.jsonl"), "--fields", "obj=x,group=label", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["r_precision"] == pytest.approx(report["trained"]["r_precision"], abs=1e-6)
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
    assert second["untrained"] == first["untrained"]
    # another encoder (no bias): the fingerprint differs, so the rows are encoded again
    config.write_text(text.replace('"bias": true', '"bias": false').replace("bias = true", "bias = false"), encoding="utf-8")
    assert "bias = false" in config.read_text(encoding="utf-8")
    with pytest.warns(UserWarning, match="rebuilding the cache"):
        third = run_training(str(config), epochs=1, echo=printed.append)
    assert third["cache"]["default"].startswith(f"rebuilt {rows}") and "encoder" in third["cache"]["default"]


def test_train_cache_dir_without_a_cache_is_refused(tmp_path):
    from simplug.cli.train_job import run_training

    config = make_group_job(tmp_path)
    text = config.read_text(encoding="utf-8").replace("batch_size = 24\n", 'batch_size = 24\ncache = "none"\ncache_dir = "cache"\n')
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="cache_dir is set but nothing is cached"):
        run_training(str(config), epochs=1, echo=lambda line: None)
