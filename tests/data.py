"""Generated data sets for the tests: groups whose signal hides under nuisance noise."""
from __future__ import annotations

import torch

from simplug import SimilarityGroupSample, SimilarityPairSample


def group_points(n_groups: int = 6, per_group: int = 20, dim: int = 12, seed: int = 0) -> list[SimilarityGroupSample]:
    centres = torch.randn(n_groups, dim, generator=torch.Generator().manual_seed(123)) * 2
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for group in range(n_groups):
        points = centres[group] + torch.randn(per_group, dim, generator=gen)
        samples.extend(SimilarityGroupSample(obj=p, group=group) for p in points)
    return samples


def pair_points(n_pairs: int = 40, dim: int = 12, seed: int = 0) -> list[SimilarityPairSample]:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n_pairs, dim, generator=gen)
    other = base + 0.3 * torch.randn(n_pairs, dim, generator=gen)
    return [SimilarityPairSample(obj_a=a, obj_b=b, score=1.0, subgroup=i % 4) for i, (a, b) in enumerate(zip(base, other))]
