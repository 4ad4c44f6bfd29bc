from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from simplug.components.head import EncoderHead
from simplug.registry.building import positive_int
from torch import nn

from .skip_connection import SkipConnectionHead


class BlendHead(EncoderHead):
    """Three similarities in one embedding: the encoder's own, a trained projection's, and
    that of trained soft assignments to ``assignments`` slots.

    ``output = [sqrt(input_weight) * n(x), sqrt(projection_weight) * n(skip(x)),
    sqrt(assignment_weight) * n(softmax(A x / assignment_temperature))]`` with ``n`` the L2
    normalisation, ``skip`` a :class:`SkipConnectionHead` of ``n_layers`` and
    ``projection_weight = 1 - input_weight - assignment_weight``. Every output has unit length,
    so its cosine (or dot product) with another output is exactly the weighted sum of the three
    cosines, and a vector index ranks by that sum.

    Why three parts: a head trained to pull groups together raises the group-level metrics
    (R-precision) but loses the encoder's fine neighbourhoods (precision@1, k-NN votes). The
    assignment part is a soft classifier trained by the same loss: items of one group come to
    share one peaked assignment, so whole groups rank together; the input part keeps the
    encoder's nearest neighbours first within them. The weights set the trade-off; search them
    with ``simplug tune``. ``assignments`` should be at least the number of groups.
    """

    def __init__(
        self,
        input_embedding_size: int,
        input_weight: float = 0.2,
        assignment_weight: float = 0.3,
        assignments: int = 64,
        assignment_temperature: float = 1.0,
        n_layers: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__(input_embedding_size, dropout=dropout)
        for name, value in (("input_weight", input_weight), ("assignment_weight", assignment_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if input_weight + assignment_weight > 1.0 + 1e-9:
            raise ValueError(
                f"input_weight + assignment_weight must be at most 1 (the projection gets the rest), got "
                f"{input_weight} + {assignment_weight} = {input_weight + assignment_weight:g}"
            )
        positive_int(assignments, "assignments")
        if isinstance(assignment_temperature, bool) or not isinstance(assignment_temperature, (int, float)) \
                or not assignment_temperature > 0:
            raise ValueError(f"assignment_temperature must be a positive number, got {assignment_temperature!r}")
        self.input_weight = float(input_weight)
        self.assignment_weight = float(assignment_weight)
        self.projection_weight = max(0.0, 1.0 - self.input_weight - self.assignment_weight)
        self.assignments = assignments
        self.assignment_temperature = float(assignment_temperature)
        self.projection = SkipConnectionHead(input_embedding_size, n_layers=n_layers)
        self.assign = nn.Linear(input_embedding_size, assignments)

    @property
    def output_size(self) -> int:
        return 2 * self.input_embedding_size + self.assignments

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        assignment = torch.softmax(self.assign(input_vectors) / self.assignment_temperature, dim=1)
        return torch.cat(
            [
                self.input_weight**0.5 * F.normalize(input_vectors, dim=1),
                self.projection_weight**0.5 * F.normalize(self.projection(input_vectors), dim=1),
                self.assignment_weight**0.5 * F.normalize(assignment, dim=1),
            ],
            dim=1,
        )

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "input_weight": self.input_weight,
            "assignment_weight": self.assignment_weight,
            "assignments": self.assignments,
            "assignment_temperature": self.assignment_temperature,
            "n_layers": self.projection.n_layers,
        }
