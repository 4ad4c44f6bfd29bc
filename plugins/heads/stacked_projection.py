from __future__ import annotations

from typing import Any, Sequence

import torch
from simplug.components.head import EncoderHead
from simplug.plugins.heads.activations import check_activation_name, make_activation
from torch import nn


def check_output_sizes(output_sizes: Any) -> list[int]:
    """``output_sizes`` as a list of positive ints; ValueError otherwise."""
    if isinstance(output_sizes, (str, bytes)) or not isinstance(output_sizes, Sequence):
        raise ValueError(
            f"output_sizes must be a non-empty list of positive ints (e.g. [256, 128]), got "
            f"{type(output_sizes).__name__} {output_sizes!r}"
        )
    if len(output_sizes) == 0:
        raise ValueError(
            "output_sizes must be a non-empty list of positive ints (e.g. [256, 128]), got an "
            "empty list; give at least one layer size"
        )
    for i, size in enumerate(output_sizes):
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(
                f"output_sizes must be a list of positive ints, but output_sizes[{i}] is {size!r}; "
                "give every layer a size of 1 or more"
            )
    return [int(s) for s in output_sizes]


class StackedProjectionHead(EncoderHead):
    """Linear layers to each of ``output_sizes`` in turn, with ``activation_fn`` between
    consecutive layers (not after the last one).

    ``activation_fn`` is a name from the allow-list in ``activations`` (relu, gelu, tanh,
    sigmoid, leaky_relu, silu, elu, identity)."""

    def __init__(
        self,
        input_embedding_size: int,
        output_sizes: Sequence[int],
        activation_fn: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__(input_embedding_size, dropout=dropout)
        self.output_sizes = check_output_sizes(output_sizes)
        self.activation_fn = check_activation_name(activation_fn)
        modules: list[nn.Module] = [nn.Linear(input_embedding_size, self.output_sizes[0])]
        for previous, size in zip(self.output_sizes, self.output_sizes[1:]):
            modules.append(make_activation(self.activation_fn))
            modules.append(nn.Linear(previous, size))
        self._stack = nn.Sequential(*modules)

    @property
    def output_size(self) -> int:
        return self.output_sizes[-1]

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        return self._stack(input_vectors)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "output_sizes": list(self.output_sizes),
            "activation_fn": self.activation_fn,
        }
