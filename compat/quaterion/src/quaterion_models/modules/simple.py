import torch
from torch import nn
from torch.nn import functional as F


class ActivationFromFnName(nn.Module):
    """A module applying the ``torch.nn.functional`` function named ``activation_fn``."""

    def __init__(self, activation_fn: str):
        super().__init__()
        if not callable(getattr(F, activation_fn, None)):
            raise ValueError(f"torch.nn.functional has no function {activation_fn!r}")
        self._activation_fn = activation_fn

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return getattr(F, self._activation_fn)(inputs)

    def extra_repr(self) -> str:
        return repr(self._activation_fn)
