"""Search with a saved model: the model's similarity, its card, evaluation through an index, the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("qdrant_client")

from simplug.data.samples import SimilarityGroupSample
from simplug.evaluation.retrieval import RetrievalTask, evaluate_retrieval
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.plugins.heads.skip_connection import SkipConnectionHead
from simplug.serving import SimilarityModel
from simplug.serving.search import evaluate_through_index, open_index

INPUT_SIZE = 5


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    model = SimilarityModel(TorchModuleEncoder(nn.Linear(INPUT_SIZE, 8), input_size=INPUT_SIZE), SkipConnectionHead(8))
    path = str(tmp_path_factory.mktemp("search") / "model")
    model.save(path, training={"loss": {"name": "simplug:triplet", "config": {"distance_metric_name": "euclidean"}},
                               "data": {"kind": "groups", "training samples": 12},
                               "held_out": {"protocol": "each held-out item retrieves from the training items",
                                            "before": {"precision@1": 0.25}, "after": {"precision@1": 0.75}}})
    return path


def test_the_model_records_its_training_distance_and_compares_with_it(model_path):
    model = SimilarityModel.load(model_path)
    assert model.manifest["similarity"] == {"distance": "euclidean", "normalized": False}
    assert model.distance == "euclidean"
    a = np.random.default_rng(0).normal(size=(3, INPUT_SIZE)).tolist()
    b = np.random.default_rng(1).normal(size=(4, INPUT_SIZE)).tolist()
    ea, eb = model.encode(a), model.encode(b)
    got = model.similarity(a, b)
    # the euclidean plugin's similarity, from distances computed by a plain loop
    from simplug.plugins.distances.euclidean import Euclidean

    loop = np.array([[np.sqrt(((x - y) ** 2).sum()) for y in eb] for x in ea])
    expected = Euclidean().similarity_matrix(torch.as_tensor(ea), torch.as_tensor(eb)).numpy()
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_array_equal(np.argsort(-got, axis=1, kind="stable"), np.argsort(loop, axis=1, kind="stable"))
    np.testing.assert_allclose(model.similarity(ea, eb), got, rtol=1e-6)  # embeddings work as well


def test_saving_writes_a_model_card(model_path):
    with open(os.path.join(model_path, "README.md"), encoding="utf-8") as fh:
        card = fh.read()
    manifest = json.load(open(os.path.join(model_path, "manifest.json"), encoding="utf-8"))
    assert "README.md" in manifest["files"]  # checked on load like every other file
    assert "**euclidean** distance (the distance of the training loss)" in card
    assert "| precision@1 | 0.250 | 0.750 |" in card
    assert "torch_module" in card and "skip_connection" in card and manifest["simplug_version"] in card
    assert "simplug serve model" in card and "simplug search model" in card


def test_the_card_escapes_what_a_manifest_holds():
    from simplug.model.card import render_model_card

    card = render_model_card({"components": [{"role": "head", "kind": "heads", "name": "x|<script>", "config": {}}],
                              "simplug_version": "0.1"}, "m")
    assert "<script>" not in card and "x\\|\\<script\\>" in card


def group_task(n=30, groups=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(groups, INPUT_SIZE)) * 2
    samples = [SimilarityGroupSample(obj=(centers[i % groups] + rng.normal(size=INPUT_SIZE)).round(5).tolist(), group=i % groups)
               for i in range(n)]
    return RetrievalTask.from_groups(samples[:10], samples[10:])


def test_evaluation_through_embedded_qdrant_matches_the_exact_engine(model_path, tmp_path):
    model = SimilarityModel.load(model_path)
    task = group_task()
    exact = evaluate_retrieval(model, task, distance=model.distance)
    with open_index(str(tmp_path / "ix"), collection="eval") as index:
        through_index = evaluate_through_index(model, task, index)
    assert through_index.pop("recall_vs_exact@10") == 1.0  # local mode is exact
    assert through_index.keys() == exact.keys()
    for name in exact:
        assert through_index[name] == pytest.approx(exact[name], abs=1e-9), name


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "simplug.cli", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_cli_index_search_and_info(model_path, tmp_path):
    rng = np.random.default_rng(3)
    data = tmp_path / "items.jsonl"
    rows = [{"id": f"item{i}", "obj": rng.normal(size=INPUT_SIZE).round(4).tolist(), "tag": i % 2} for i in range(12)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    index = str(tmp_path / "ix")
    first = run_cli("index", model_path, str(data), "--index", index, "--id-field", "id", "--payload-fields", "tag")
    assert first.returncode == 0, first.stderr
    assert "created collection 'simplug'" in first.stdout and "holds 12" in first.stdout
    again = run_cli("index", model_path, str(data), "--index", index, "--id-field", "id", "--payload-fields", "tag")
    assert again.returncode == 0 and "holds 12" in again.stdout  # a rerun adds nothing
    query = json.dumps(rows[4]["obj"])
    found = run_cli("search", model_path, index, query, "-k", "3", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)[0]["hits"]
    assert hits[0]["id"] == "item4" and len(hits) == 3 and hits[0]["payload"] == {"tag": 0}
    assert "Traceback" not in found.stderr  # the client is closed, not left to the garbage collector

    bad = run_cli("search", model_path, index, query, "-k", "13")
    assert bad.returncode == 1 and "k=13 is larger than the collection, which holds 12" in bad.stderr
    missing = run_cli("search", model_path, index, query, "--collection", "nope")
    assert missing.returncode == 1 and "there is no collection 'nope'" in missing.stderr
    unreachable = run_cli("search", model_path, "http://127.0.0.1:9", query)
    assert unreachable.returncode == 1 and "cannot reach the Qdrant server at http://127.0.0.1:9" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr

    info = run_cli("info", model_path, "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["similarity"]["distance"] == "euclidean"
    assert "similarity: euclidean distance" in run_cli("info", model_path).stdout
