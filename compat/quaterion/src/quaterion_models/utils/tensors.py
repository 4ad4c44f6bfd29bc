from __future__ import annotations

from typing import Any

import torch


def move_to_device(obj: Any, device: Any) -> Any:
    """Move every tensor inside dicts, lists and tuples (named tuples too) to ``device``."""
    if device is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {key: move_to_device(value, device) for key, value in obj.items()}
    if isinstance(obj, list):
        return [move_to_device(item, device) for item in obj]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return obj.__class__(*(move_to_device(item, device) for item in obj))
    if isinstance(obj, tuple):
        return tuple(move_to_device(item, device) for item in obj)
    return obj
