"""Indexing and query speed of the built-in Qdrant index (embedded), in one run.

    python benchmarks/index_speed.py [--texts 2000] [--vectors 100000] [--queries 200]

1. Indexing throughput against encoding: the same texts (chatterbot corpus utterances, repeated
   with a suffix up to ``--texts``) through ``SimilarityModel.encode`` (what ``simplug encode``
   runs) and through ``index_records`` (what ``simplug index`` runs: encode + upsert into an
   embedded collection), interleaved ``--repeats`` times; target: index/encode throughput >= 0.9.
2. Query latency: ``--vectors`` random 384-d vectors in an embedded collection; one text per
   query, top-10: the p50/p99 of the index search alone and of encode + search, beside the floor
   of an exact torch search (one matmul + topk over the same vectors in memory).
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from simplug.components.index import IndexInfo
from simplug.plugins.encoders.sentence_transformer import SentenceTransformerEncoder
from simplug.plugins.heads.skip_connection import SkipConnectionHead
from simplug.serving import SimilarityModel
from simplug.serving.search import index_records, model_fingerprint, open_index


def corpus_texts(limit: int) -> list[str]:
    import chatterbot_corpus
    import yaml

    texts: set[str] = set()
    for path in sorted(glob.glob(os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data", "english", "*.yml"))):
        with open(path, encoding="utf-8") as fh:
            for conversation in yaml.safe_load(fh).get("conversations", []):
                texts.update(" ".join(t.split()) for t in conversation if isinstance(t, str) and t.strip())
    base = sorted(texts)
    return [base[i % len(base)] + ("" if i < len(base) else f" ({i // len(base)})") for i in range(limit)]


def percentiles(ms: list[float]) -> str:
    return f"p50 {np.percentile(ms, 50):7.2f} ms, p99 {np.percentile(ms, 99):7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        SimilarityModel(SentenceTransformerEncoder(), SkipConnectionHead(384)).save(tmp + "/model")
        model = SimilarityModel.load(tmp + "/model")
        texts = corpus_texts(args.texts)
        model.encode(texts[:64])  # warm up

        encode_s, index_s = [], []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            model.encode(texts, batch_size=32)
            encode_s.append(time.perf_counter() - start)
            with open_index(os.path.join(tmp, f"ix{repeat}")) as index:
                start = time.perf_counter()
                report = index_records(model, index, [{"obj": t, "n": i} for i, t in enumerate(texts)], id_field="n")
                index_s.append(time.perf_counter() - start)
                assert report.total == len(texts)
        enc, idx = statistics.median(encode_s), statistics.median(index_s)
        print(f"{len(texts)} texts: encode {len(texts) / enc:.0f} texts/s, index (encode + upsert) "
              f"{len(texts) / idx:.0f} texts/s; ratio index/encode throughput {enc / idx:.2f} (target >= 0.9)")

        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(args.vectors, 384)).astype(np.float32)
        with open_index(os.path.join(tmp, "big")) as index:
            index.create(IndexInfo(dimension=384, distance="cosine", model_fingerprint=model_fingerprint(model)))
            start = time.perf_counter()
            for s in range(0, args.vectors, 2000):
                index.upsert([str(i) for i in range(s, min(s + 2000, args.vectors))], vectors[s:s + 2000],
                             [{}] * len(vectors[s:s + 2000]))
            print(f"upload of {args.vectors} x 384 vectors: {time.perf_counter() - start:.1f} s")
            queries = [texts[i % len(texts)] for i in range(args.queries)]
            search_ms, total_ms, floor_ms = [], [], []
            matrix = torch.nn.functional.normalize(torch.from_numpy(vectors), dim=1)
            agree = 0
            for q in queries:
                t0 = time.perf_counter()
                vector = model.encode([q], to_numpy=True)
                t1 = time.perf_counter()
                hits = index.search(vector, 10)[0]
                t2 = time.perf_counter()
                total_ms.append((t2 - t0) * 1000)
                search_ms.append((t2 - t1) * 1000)
                t3 = time.perf_counter()
                with torch.inference_mode():
                    exact = torch.topk(torch.nn.functional.normalize(torch.from_numpy(vector), dim=1) @ matrix.T, 10).indices[0]
                floor_ms.append((time.perf_counter() - t3) * 1000)
                agree += len({h.id for h in hits} & {str(i) for i in exact.tolist()})
        print(f"query, one text, top-10 of {args.vectors} (embedded):")
        print(f"  index search alone:      {percentiles(search_ms)}")
        print(f"  encode + index search:   {percentiles(total_ms)}")
        print(f"  exact torch matmul floor: {percentiles(floor_ms)} (search alone)")
        print(f"  recall of the index vs exact top-10: {agree / (10 * len(queries)):.3f}")


if __name__ == "__main__":
    main()
