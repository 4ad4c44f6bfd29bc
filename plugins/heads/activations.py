"""Activation functions a head may name in its config: a fixed allow-list of ``torch.nn``
modules, resolved by name (never by ``eval`` or an import from a string), so that a saved
model's config stays plain JSON and loading it runs no code it names."""
from __future__ import annotations

from typing import Callable

from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "identity": nn.Identity,
}


def check_activation_name(name: object, argument: str = "activation_fn") -> str:
    """The canonical (lower-case) name of an allowed activation; ValueError otherwise."""
    allowed = ", ".join(repr(n) for n in ACTIVATIONS)
    if not isinstance(name, str):
        raise ValueError(
            f"{argument} must be the name of an activation (a str), got {type(name).__name__} "
            f"{name!r}; use one of: {allowed}"
        )
    canonical = name.strip().lower()
    if canonical not in ACTIVATIONS:
        raise ValueError(f"unknown {argument} {name!r}; use one of: {allowed}")
    return canonical


def make_activation(name: str, argument: str = "activation_fn") -> nn.Module:
    """A fresh activation module for an allowed name."""
    return ACTIVATIONS[check_activation_name(name, argument)]()
