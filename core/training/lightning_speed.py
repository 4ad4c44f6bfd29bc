"""Lightning's per-step machinery, made cheap for cached training, all in one place.

A cached step of a small head costs tens of microseconds of real work, so Lightning's own
bookkeeping around it (hook dispatch, profiler contexts, attribute writes, argument checks)
shows in the epoch time. Each speed-up here relies on a detail of Lightning 2.x;
``tests/test_lightning_speed.py`` fails when an upgrade changes one of them.
"""
from __future__ import annotations

import inspect
from contextlib import nullcontext
from typing import Any, Callable

from pytorch_lightning.profilers import PassThroughProfiler

PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})


class NoProfiler(PassThroughProfiler):
    """Lightning's do-nothing profiler, minus its cost: Lightning enters ``profiler.profile(name)``
    around every hook, dozens of times a step, and the stock one builds a generator-based context
    manager each time (~1 us apiece: tens of microseconds a step, as much as a cached step's
    optimizer update). This one hands back one shared no-op context."""

    _nothing = nullcontext()

    def profile(self, action_name: str) -> Any:  # type: ignore[override]
        return self._nothing


class FastStepHooks:
    """Mixed in before ``LightningModule``."""

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets plain attributes (e.g. _current_fx_name) around every hook call, dozens
        # of times per step; nn.Module's __setattr__ runs its Parameter/Module/buffer checks on
        # each. Values that can be none of those, under names that already hold plain values,
        # are set directly. (A name already in __dict__ is a plain attribute: nn.Module keeps
        # parameters, buffers and submodules out of it.)
        if type(value) in PLAIN_TYPES and name in self.__dict__:
            self.__dict__[name] = value
            return
        super().__setattr__(name, value)

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: int | float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        # Lightning calls this hook after every backward; without a clip value it only checks
        # its arguments, at a cost that shows on a cached step
        if not gradient_clip_val and not getattr(getattr(self, "_trainer", None), "gradient_clip_val", None):
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)  # type: ignore[misc]


def store_signature(method: Callable[..., Any]) -> None:
    """Lightning reads ``training_step``'s signature on every step (does it take batch_idx?); a
    stored signature spares inspect from rebuilding it from the code object each time."""
    method.__signature__ = inspect.signature(method)  # type: ignore[attr-defined]
