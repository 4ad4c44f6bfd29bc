"""Triplet loss, mining="all", against a cross-batch memory: the sorted-negatives form in
plugins/losses/triplet.py vs the plain (anchor, positive, negative) cube it replaced.

Run by hand: python benchmarks/bench_triplet_all_mining.py  (prints times and ratios
measured in the same run; values of the two forms are checked to agree).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from simplug.registry import get_registry


def cube_all(dist, positive, negative, margin):
    mask = positive.unsqueeze(2) & negative.unsqueeze(1)
    losses = F.relu(dist.unsqueeze(2) - dist.unsqueeze(1) + margin)[mask]
    return losses[losses > 1e-16].mean()


def seconds(fn, reps=3):
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def main():
    torch.manual_seed(0)
    loss = get_registry().resolve("losses", "triplet")(mining="all", margin=0.5)
    for n, m in [(64, 64), (128, 128), (64, 1024), (256, 256)]:
        emb = torch.randn(n, 64, requires_grad=True)
        memory, groups, memory_groups = torch.randn(m, 64), torch.randint(0, 8, (n,)), torch.randint(0, 8, (m,))

        def sorted_form():
            value = loss.xbm_loss(emb, groups, memory, memory_groups)
            value.backward()
            return value

        def cube_form():
            same = groups[:, None] == memory_groups[None, :]
            value = cube_all(loss.distance_metric.distance_matrix(emb, memory), same, ~same, 0.5)
            value.backward()
            return value

        torch.testing.assert_close(sorted_form(), cube_form(), rtol=1e-4, atol=1e-5)
        new, old = seconds(sorted_form), seconds(cube_form)
        print(f"batch {n:4d} x memory {m:5d}: sorted {new * 1e3:7.1f} ms  cube {old * 1e3:8.1f} ms  ratio {old / new:5.1f}x")


if __name__ == "__main__":
    main()
