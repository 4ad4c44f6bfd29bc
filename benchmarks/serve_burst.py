"""A burst of concurrent /encode requests on loopback, against model.encode in the same process.

    python benchmarks/serve_burst.py [--requests 200] [--threads 8] [--per-request 8]

Prints requests per second, latency percentiles and the HTTP overhead as a ratio to calling
``model.encode`` directly on the same batches (measured in the same run).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.plugins.heads.skip_connection import SkipConnectionHead
from simplug.serving import SimilarityModel
from simplug.serving.http import make_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-request", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=384)
    args = parser.parse_args()

    torch.manual_seed(0)
    encoder = TorchModuleEncoder(nn.Sequential(nn.Linear(args.input_size, 256), nn.ReLU()), input_size=args.input_size)
    with tempfile.TemporaryDirectory() as tmp:
        SimilarityModel(encoder, SkipConnectionHead(256, n_layers=2)).save(tmp + "/model")
        model = SimilarityModel.load(tmp + "/model")
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(args.per_request, args.input_size)).round(5).tolist() for _ in range(args.requests)]

    for b in batches[:20]:  # warm up torch before either timing
        model.encode(b)
    start = time.perf_counter()
    direct = [model.encode(b) for b in batches]
    direct_s = time.perf_counter() - start

    server = make_server(model, port=0, access_log=False, max_batch=max(256, args.per_request))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bodies = [json.dumps(b).encode() for b in batches]

    def call(i: int) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(server.url + "/encode", bodies[i]), timeout=60) as resp:
            out = np.asarray(json.loads(resp.read())["embeddings"], dtype=np.float32)
        return time.perf_counter() - t0, out

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        results = list(pool.map(call, range(args.requests)))
    http_s = time.perf_counter() - start
    server.shutdown()
    server.server_close()

    worst = max(float(np.abs(out - ref).max()) for (_, out), ref in zip(results, direct))
    latencies = np.array([lat for lat, _ in results]) * 1000
    print(f"{args.requests} requests x {args.per_request} objects of size {args.input_size}, {args.threads} client threads")
    print(f"HTTP:   {http_s:.2f} s, {args.requests / http_s:.0f} requests/s, latency p50 {np.percentile(latencies, 50):.1f} ms, "
          f"p99 {np.percentile(latencies, 99):.1f} ms")
    print(f"direct: {direct_s:.2f} s (model.encode on the same batches)")
    print(f"ratio HTTP/direct: {http_s / direct_s:.1f}x; max abs diff of answers vs direct: {worst:.2g}")


if __name__ == "__main__":
    main()
