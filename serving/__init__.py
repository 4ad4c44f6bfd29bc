"""Serving: load a saved model and encode. Imports torch, never training code."""
from __future__ import annotations

from typing import Any

__all__ = ["SimilarityModel", "DEFAULT_ENCODER_KEY"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from simplug.model import similarity_model as model

        return getattr(model, name)
    raise AttributeError(f"module 'simplug.serving' has no attribute {name!r}")
