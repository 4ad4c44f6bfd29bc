"""Blockwise evaluation against one full distance matrix, run by hand:

    python benchmarks/evaluator_blocks.py [N] [DIM]

Prints the time of each way, the largest distance block each one allocates and the
ratio, and checks that both give the same numbers. The baseline (one N x N matrix, as
Metric.compute does for a batch) is measured in the same run.
"""
from __future__ import annotations

import sys
import time

import torch

from simplug import Evaluator


def main(n: int = 6000, dim: int = 64, groups: int = 300) -> None:
    torch.manual_seed(0)
    centres = torch.randn(groups, dim)
    labels = torch.randint(0, groups, (n,))
    embeddings = centres[labels] + 1.5 * torch.randn(n, dim)
    targets = {"groups": labels}
    metrics = {"p@1": {"name": "retrieval_precision", "k": 1}, "recall@10": {"name": "recall", "k": 10},
               "rr": "retrieval_reciprocal_rank", "r_precision": "retrieval_r_precision", "map@r": "map_at_r"}
    results = {}
    for label, block in (("full matrix", n), ("blocks of 512", 512)):
        evaluator = Evaluator(metrics, block_size=block)
        start = time.perf_counter()
        results[label] = evaluator.compute(embeddings, targets)
        elapsed = time.perf_counter() - start
        mib = block * n * 4 / 2**20
        print(f"{label:>14}: {elapsed:6.2f} s, largest distance block {block} x {n} = {mib:7.1f} MiB")
        results[label + " time"] = elapsed
    same = results["full matrix"] == results["blocks of 512"]
    print(f"time ratio blocks/full: {results['blocks of 512 time'] / results['full matrix time']:.2f}; "
          f"memory ratio: {512 / n:.3f}; identical results: {same}")
    print({k: round(v, 4) for k, v in results["blocks of 512"].items()})


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
