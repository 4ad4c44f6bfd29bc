"""The `indexes` kind and the built-in Qdrant index (embedded, through qdrant-client's local mode)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("qdrant_client")

from simplug.components.index import CollectionNotFoundError, IndexInfo, IndexMismatchError, IndexUnavailableError
from simplug.errors import DataError
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.plugins.heads.skip_connection import SkipConnectionHead
from simplug.plugins.indexes.qdrant import QdrantIndex
from simplug.registry import Registry
from simplug.serving import SimilarityModel
from simplug.serving.search import index_records, open_index, search
from simplug.testing import ConformanceError
from simplug.testing import check_index

INPUT_SIZE = 5


def save_model(path, seed=0, distance=None):
    torch.manual_seed(seed)
    model = SimilarityModel(TorchModuleEncoder(nn.Linear(INPUT_SIZE, 8), input_size=INPUT_SIZE), SkipConnectionHead(8))
    if distance:
        model.distance = distance
    model.save(str(path))
    return SimilarityModel.load(str(path))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("index") / "model")


def records(n=30, seed=1):
    rng = np.random.default_rng(seed)
    return [{"id": f"r{i}", "obj": rng.normal(size=INPUT_SIZE).round(4).tolist(), "group": i % 3} for i in range(n)]


def test_qdrant_passes_the_index_contract():
    check_index(QdrantIndex, name="qdrant")


def test_the_contract_catches_a_backend_that_duplicates_ids():
    class Appending(QdrantIndex):
        def upsert(self, ids, vectors, payloads):  # a new id every time: rewrites duplicate
            super().upsert([f"{i}-{self.count()}" for i in ids], vectors, payloads)

    with pytest.raises(ConformanceError, match="must be replaced"):
        check_index(Appending, name="appending")


def test_indexes_are_a_plugin_kind_listed_by_simplug_list():
    registry = Registry()
    assert registry.resolve("indexes", "qdrant") is QdrantIndex
    out = subprocess.run([sys.executable, "-m", "simplug.cli", "list", "--kind", "indexes", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["kind"], r["name"]) for r in rows] == [("indexes", "qdrant")]


def test_reindexing_and_a_resumed_run_never_duplicate(model, tmp_path):
    data = records(30)

    def interrupted():
        for i, record in enumerate(data):
            if i == 17:
                raise KeyboardInterrupt  # killed part way
            yield record

    with open_index(str(tmp_path / "ix")) as index:
        with pytest.raises(KeyboardInterrupt):
            index_records(model, index, interrupted(), id_field="id", batch_size=4)
        assert 0 < index.count() < 30
    with open_index(str(tmp_path / "ix")) as index:  # a rerun completes it
        report = index_records(model, index, data, id_field="id", batch_size=4)
        assert (report.created, report.written, report.total) == (False, 30, 30)
        report = index_records(model, index, data, batch_size=7)  # ids from record hashes: stable too
        assert index.count() == 60  # the hash ids are other ids than "r0".., but a second run adds none:
        index_records(model, index, data + data[:5], batch_size=7)
        assert index.count() == 60


def test_duplicate_ids_in_the_data_are_refused_naming_both_records(model, tmp_path):
    data = records(6)
    data[4]["id"] = "r1"
    with open_index(str(tmp_path / "ix")) as index:
        with pytest.raises(DataError, match=r"duplicate id 'r1': records 2 and 5"):
            index_records(model, index, data, id_field="id")


def test_an_index_refuses_another_model_and_another_distance(model, tmp_path):
    other = save_model(tmp_path / "other", seed=1)
    euclid = save_model(tmp_path / "euclid", seed=0, distance="euclidean")
    with open_index(str(tmp_path / "ix")) as index:
        index_records(model, index, records(10), id_field="id")
        assert index.info().distance == "cosine"
        for wrong, message in ((other, "was built by the model at .*model.* not by this one at .*other"),
                               (euclid, "'cosine' distance but the model at .*euclid compares with 'euclidean'")):
            with pytest.raises(IndexMismatchError, match=message):
                search(wrong, index, [records(1)[0]["obj"]], k=3)
            with pytest.raises(IndexMismatchError, match=message):
                index_records(wrong, index, records(3), id_field="id")


@pytest.mark.parametrize("distance", ["cosine", "dot_product", "euclidean", "manhattan"])
def test_the_index_searches_with_the_models_distance(tmp_path, distance):
    model = save_model(tmp_path / "m", distance=distance)
    data = records(40)
    with open_index(str(tmp_path / "ix")) as index:
        index_records(model, index, data, id_field="id")
        assert index.info().distance == distance
        query = np.random.default_rng(5).normal(size=(1, INPUT_SIZE)).tolist()
        hits = search(model, index, query, k=5)[0]
    # reference: the model's own similarity (the distance plugin), ranked by numpy
    scores = model.similarity(query, [r["obj"] for r in data])[0]
    expected = [data[j]["id"] for j in np.argsort(-scores, kind="stable")[:5]]
    assert [h.id for h in hits] == expected
    # scores: the similarity for cosine and dot, minus the distance for euclidean and manhattan
    from simplug.components.distance import resolve_distance

    q = model.encode(query, to_numpy=False)
    d = model.encode([r["obj"] for r in data], to_numpy=False)
    metric = resolve_distance(distance)
    reference = (metric.similarity_matrix(q, d) if distance in ("cosine", "dot_product") else -metric.distance_matrix(q, d))[0]
    np.testing.assert_allclose([h.score for h in hits], np.sort(reference.numpy())[::-1][:5], rtol=1e-4, atol=1e-4)


def test_bad_searches_get_errors_that_name_the_problem(model, tmp_path):
    with open_index(str(tmp_path / "ix")) as index:
        with pytest.raises(CollectionNotFoundError, match="build it first with `simplug index"):
            search(model, index, [[0.0] * INPUT_SIZE], k=1)
        index_records(model, index, records(10), id_field="id")
        with pytest.raises(ValueError, match="k must be a positive"):
            search(model, index, [[0.0] * INPUT_SIZE], k=0)
        with pytest.raises(ValueError, match="k=11 is larger than the collection, which holds 10"):
            search(model, index, [[0.0] * INPUT_SIZE], k=11)
        with pytest.raises(DataError, match="wrong type for this model: item 0 is a string"):
            search(model, index, ["a text"], k=1)
        with pytest.raises(DataError, match="queries are a list"):
            search(model, index, "a text", k=1)
        hits = search(model, index, [[0.1] * INPUT_SIZE], k=4, where={"group": 1})[0]
        assert len(hits) == 4 - 1 and {h.payload["group"] for h in hits} == {1}  # only 3 in group 1 of 10


def test_an_unreachable_server_is_named_without_a_traceback():
    with pytest.raises(IndexUnavailableError, match=r"cannot reach the Qdrant server at http://127.0.0.1:9 "):
        QdrantIndex("http://127.0.0.1:9", timeout=2)


def test_a_locked_folder_says_which_and_why(tmp_path):
    with QdrantIndex(str(tmp_path / "ix")):
        with pytest.raises(IndexUnavailableError, match="one process at a time"):
            QdrantIndex(str(tmp_path / "ix"))


def test_a_collection_not_made_by_simplug_is_refused(tmp_path):
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "ix"))
    client.create_collection("theirs", vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    client.close()
    with QdrantIndex(str(tmp_path / "ix"), collection="theirs") as index:
        with pytest.raises(IndexMismatchError, match="was not made by simplug"):
            index.info()


def test_index_info_round_trips_and_rejects_damage():
    info = IndexInfo(dimension=4, distance="cosine", model_fingerprint="ab", model_path="m", side="document")
    assert IndexInfo.from_dict(json.loads(json.dumps(info.as_dict()))) == info
    with pytest.raises(IndexMismatchError, match="damaged"):
        IndexInfo.from_dict({"distance": "cosine"})
