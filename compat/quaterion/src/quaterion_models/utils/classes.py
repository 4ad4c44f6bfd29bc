"""Recording a class by its import path and importing it back (the original's config format)."""
from __future__ import annotations

import importlib
import logging
from typing import Any


def save_class_import(obj: Any) -> dict:
    """``{"module": ..., "class": ...}`` naming the class of ``obj``."""
    cls = obj.__class__
    if cls.__module__ == "__main__":
        logging.warning(
            "Class %s is defined in the script being run (__main__); a saved model that names it "
            "cannot be loaded from another script. Move the class into a module.", cls.__qualname__
        )
    return {"module": cls.__module__, "class": cls.__qualname__}


def restore_class(data: dict) -> Any:
    """Import the class named by ``{"module": ..., "class": ...}`` (imports user code)."""
    try:
        module = importlib.import_module(data["module"])
    except KeyError as exc:
        raise ValueError(f"class record {data!r} lacks 'module' and 'class'") from exc
    target: Any = module
    for part in data["class"].split("."):
        target = getattr(target, part)
    return target
