"""Similarity samples: how users describe which objects are alike."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Sequence


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


@dataclass
class SimilarityGroupSample:
    """One object and the id of its group: objects of one group are similar."""

    obj: Any
    group: int


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
