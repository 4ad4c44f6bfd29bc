"""Mask and dtype helpers of the original, and ``iter_by_batch``."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Optional, Union

import torch
from torch.nn import functional as F


def info_value_of_dtype(dtype: torch.dtype) -> Union[torch.finfo, torch.iinfo]:
    if dtype == torch.bool:
        raise TypeError("Does not support torch.bool")
    return torch.finfo(dtype) if dtype.is_floating_point else torch.iinfo(dtype)


def min_value_of_dtype(dtype: torch.dtype) -> Union[int, float]:
    return info_value_of_dtype(dtype).min


def max_value_of_dtype(dtype: torch.dtype) -> Union[int, float]:
    return info_value_of_dtype(dtype).max


def get_triplet_mask(labels: torch.Tensor) -> torch.Tensor:
    """``mask[i, j, k]``: i, j, k distinct, label i == label j, label i != label k."""
    n = labels.shape[0]
    distinct = ~torch.eye(n, dtype=torch.bool, device=labels.device)
    all_distinct = distinct.unsqueeze(2) & distinct.unsqueeze(1) & distinct.unsqueeze(0)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    return all_distinct & same.unsqueeze(2) & ~same.unsqueeze(1)


def get_anchor_positive_mask(labels_a: torch.Tensor, labels_b: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``mask[i, j]``: a's i and b's j share a label; when both label sets are equal (one batch
    against itself), i == j is excluded."""
    if labels_b is None:
        labels_b = labels_a
    mask = labels_a.unsqueeze(1) == labels_b.unsqueeze(0)
    if torch.equal(labels_a, labels_b):
        mask &= ~torch.eye(labels_a.shape[0], dtype=torch.bool, device=labels_a.device)
    return mask


def get_anchor_negative_mask(labels_a: torch.Tensor, labels_b: Optional[torch.Tensor] = None) -> torch.Tensor:
    if labels_b is None:
        labels_b = labels_a
    return labels_a.unsqueeze(1) != labels_b.unsqueeze(0)


def iter_by_batch(sequence: Any, batch_size: int, log_progress: bool = True) -> Iterator[List[Any]]:
    """Lists of up to ``batch_size`` items: by index for sized, indexable data, else by iterating."""
    indexable = hasattr(sequence, "__getitem__") and hasattr(sequence, "__len__")
    if indexable:
        try:
            size = len(sequence)
            if size:
                sequence[0]
        except (TypeError, NotImplementedError, IndexError, KeyError, AttributeError):
            indexable = False
    if indexable:
        starts: Iterable[int] = range(0, size, batch_size)
        if log_progress:
            import tqdm

            starts = tqdm.tqdm(starts, total=(size + batch_size - 1) // batch_size)
        for start in starts:
            yield [sequence[i] for i in range(start, min(start + batch_size, size))]
        return
    items: Iterable[Any] = sequence
    if log_progress:
        import tqdm

        items = tqdm.tqdm(sequence)
    batch: List[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def get_masked_maximum(dists: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Maximum over ``dim`` of the entries where ``mask`` is set (keepdim)."""
    lowest = dists.min(dim, keepdim=True).values
    return ((dists - lowest) * mask).max(dim, keepdim=True).values + lowest


def get_masked_minimum(dists: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Minimum over ``dim`` of the entries where ``mask`` is set (keepdim)."""
    highest = dists.max(dim, keepdim=True).values
    return ((dists - highest) * mask).min(dim, keepdim=True).values + highest


def l2_norm(inputs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return F.normalize(inputs, p=2, dim=dim)
