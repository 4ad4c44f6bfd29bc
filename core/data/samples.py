"""Similarity samples: how users describe which objects are alike.

Samples check their numbers when they are made, so a bad one fails where it is written, not
as a raw ``int()`` or a NaN loss once training has started.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Sequence

from simplug.errors import DataError


def _whole_number(value: Any, what: str, hint: str) -> int:
    """An int, a NumPy/torch integer scalar, or a float with no fraction (3.0); nothing else."""
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise DataError(f"{what} must be an int, got {value!r}; {hint}")
    if isinstance(value, numbers.Integral):
        return int(value)
    try:
        index = value.__index__()  # NumPy and torch integer scalars
    except (AttributeError, TypeError, RuntimeError, ValueError):
        index = None
    if index is not None:
        return int(index)
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(f"{what} must be an int, got {type(value).__name__} {value!r}; {hint}") from None
    if not math.isfinite(number) or number != int(number):
        raise DataError(f"{what} must be a whole number, got {value!r}; {hint}")
    return int(number)


@dataclass
class SimilarityPairSample:
    """Two objects and how similar they are.

    ``score`` is a float: 1.0 similar, 0.0 dissimilar, anything between for graded data.
    Pairs in *different* subgroups are treated as negatives of each other by pair losses
    and metrics; pairs in the same subgroup are not (they may be related).
    """

    obj_a: Any
    obj_b: Any
    score: float = 1.0
    subgroup: int = 0

    def __post_init__(self) -> None:
        try:
            score = float(self.score)
        except (TypeError, ValueError, RuntimeError):
            raise DataError(
                f"SimilarityPairSample score must be a number (1.0 similar, 0.0 dissimilar), got {self.score!r}"
            ) from None
        if not math.isfinite(score):
            raise DataError(f"SimilarityPairSample score must be a finite number, got {self.score!r}")
        self.score = score
        self.subgroup = _whole_number(self.subgroup, "SimilarityPairSample subgroup",
                                      "pairs in different subgroups are negatives of each other")


@dataclass
class SimilarityGroupSample:
    """One object and the id of its group: objects of one group are similar."""

    obj: Any
    group: int

    def __post_init__(self) -> None:
        self.group = _whole_number(
            self.group, "SimilarityGroupSample group",
            "for labels such as names, let SimilarityGroupDataset(list of (obj, label)) number them, "
            "or map each label to an int yourself (one table for every split of a data set)",
        )


class SimilarityGroupDataset(Sequence[SimilarityGroupSample]):
    """Turns ``(record, label)`` data (any classification data set) into group samples."""

    def __init__(self, data: Sequence[tuple[Any, Hashable]] | Iterable[tuple[Any, Hashable]]):
        self._data = list(data)
        labels = sorted({label for _, label in self._data}, key=repr)
        self.label_to_group = {label: i for i, label in enumerate(labels)}

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: int) -> SimilarityGroupSample:  # type: ignore[override]
        record, label = self._data[index]
        return SimilarityGroupSample(obj=record, group=self.label_to_group[label])
