"""Distance base class.

Every distance provides four consistent views: ``distance(x, y)`` and ``similarity(x, y)``
row by row, and ``distance_matrix(x, y)`` / ``similarity_matrix(x, y)`` for all pairs, with
``distance_matrix(x, y)[i, j] == distance(x[i], y[j])``. Smaller distance = more alike.
"""
from __future__ import annotations

import torch
from simplug.registry import get_registry


class Distance:
    """Subclasses implement ``similarity_matrix`` and ``distance_from_similarity`` or
    override the four methods directly when the distance has a cheaper form."""

    name: str = ""

    def similarity_matrix(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def distance_matrix(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_config_dict(self) -> dict:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def resolve_distance(distance: "str | Distance") -> Distance:
    """A ``Distance`` instance from itself or a registered name."""
    if isinstance(distance, Distance):
        return distance
    if isinstance(distance, str):
        return get_registry().resolve("distances", distance)()
    raise TypeError(f"distance must be a registered name or a Distance, got {type(distance).__name__}")
