"""The plugin contract: one hook per component kind (see ``simplug.registry.kinds``).

A plugin module implements any of these with ``@hookimpl`` and calls
``register(name, target, summary="...")`` for each component it provides, e.g.::

    @hookimpl
    def register_heads(register):
        register("my_head", "my_package.head:MyHead", summary="...")

``target`` is the class itself or a lazy ``"module:attr"`` string, imported on first use.
"""
from __future__ import annotations

from typing import Any, Callable

import pluggy
from simplug.registry.kinds import KINDS, Kind

PROJECT = "simplug"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


def _spec(kind: Kind) -> Callable[..., Any]:
    def spec(register):  # type: ignore[no-untyped-def]  # the signature plugins must match
        ...

    spec.__name__ = spec.__qualname__ = kind.hook
    spec.__doc__ = f"Register {kind.name}: {kind.description} (subclasses of ``{kind.base.replace(':', '.')}``)."
    return hookspec(spec)


for _kind in KINDS:
    globals()[_kind.hook] = _spec(_kind)

HOOKS: dict[str, str] = {kind.name: kind.hook for kind in KINDS}
