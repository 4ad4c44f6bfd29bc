"""Plugins and their components: hook specs, the kind table, the registry, and building a
component from a config. Imports no torch."""
from __future__ import annotations

from simplug.registry.hookspecs import hookimpl, hookspec
from simplug.registry.registry import (
    BUILTIN_DISTRIBUTION,
    ENTRY_POINT_GROUP,
    LOCAL_DISTRIBUTION,
    ComponentRecord,
    PluginInfo,
    Registry,
    get_registry,
    normalize_distribution,
    normalize_kind,
    reset_registry,
    singular_kind,
)

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "LOCAL_DISTRIBUTION",
    "ComponentRecord",
    "PluginInfo",
    "Registry",
    "get_registry",
    "hookimpl",
    "hookspec",
    "normalize_distribution",
    "normalize_kind",
    "reset_registry",
    "singular_kind",
]
