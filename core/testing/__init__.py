"""Test helpers for plugin authors; also a pytest plugin (entry point ``pytest11``).

Once simplug is installed, every pytest run in that environment gets the fixture
``isolated_registry``. Import the rest::

    from simplug.testing import check_head, registered_plugin

    def test_my_head_conforms():
        check_head(MyHead(input_embedding_size=12, output_size=8), name="my_head")

Each ``check_*`` runs the contract the rest of simplug relies on for that kind and raises an
``AssertionError`` (``ConformanceError``) whose message names the component and the fault.

pytest imports this module at start-up in every project of the environment, so it must stay
cheap: torch and the component base classes are imported inside the functions.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from simplug.registry import PluginInfo, Registry

class ConformanceError(AssertionError):
    """A component breaks the contract of its kind; the message says how."""


__all__ = [
    "ConformanceError",
    "isolated_registry",
    "registry_context",
    "registered_plugin",
    "check_component",
    "check_head",
    "check_loss",
    "check_encoder",
    "check_distance",
    "check_metric",
    "check_cache_backend",
]


# --------------------------------------------------------------------------- registries
@contextlib.contextmanager
def registry_context(builtins: bool = True) -> Iterator["Registry"]:
    """A fresh registry that does not discover installed plugins, made the process-wide one
    for the duration (so names resolve through it), and the previous one restored after.

    ``builtins=True`` loads simplug's own components (losses need the built-in distances).
    """
    from simplug.registry import (
        BUILTIN_DISTRIBUTION,
        Registry,
        normalize_distribution,
        reset_registry,
    )

    registry = Registry(autoload=False, strict=True)
    if builtins:
        for ep in Registry.entry_points():
            dist = ep.dist.metadata["Name"] if ep.dist is not None else ""
            if normalize_distribution(dist) == BUILTIN_DISTRIBUTION:
                registry.load_entry_point(dist, ep.name)
    previous = reset_registry(registry)
    try:
        yield registry
    finally:
        reset_registry(previous)


@contextlib.contextmanager
def registered_plugin(
    plugin: Any,
    registry: "Registry | None" = None,
    name: str | None = None,
    distribution: str | None = None,
    version: str | None = None,
) -> Iterator["PluginInfo"]:
    """Register a hooks module (or its dotted name) for the duration of the block.

    ``registry`` defaults to the process-wide one. The distribution and version default to
    those of the installed distribution that provides the module, so records look as they will
    in a saved model; a module that is not installed is recorded as local code.
    """
    import importlib

    from simplug.registry import LOCAL_DISTRIBUTION, get_registry
    from simplug.registry.registry import distribution_of_module

    if isinstance(plugin, str):
        plugin = importlib.import_module(plugin)
    registry = registry if registry is not None else get_registry()
    module_name = getattr(plugin, "__name__", type(plugin).__name__)
    if distribution is None:
        distribution, found_version = distribution_of_module(module_name)
        version = found_version if version is None else version
    info = registry.add_plugin(
        plugin,
        name=name or module_name,
        distribution=distribution or LOCAL_DISTRIBUTION,
        version=version or "",
    )
    if info.status != "ok":
        registry.remove_plugin(info)
        raise ConformanceError(f"plugin {info.name!r} failed to register: {info.error}")
    try:
        yield info
    finally:
        registry.remove_plugin(info)


try:  # the fixture exists only under pytest; the checks work without it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def isolated_registry() -> Iterator["Registry"]:
        """A registry with simplug's built-ins and no other installed plugin, used by
        ``get_registry()`` during the test. Add yours with ``registered_plugin``."""
        with registry_context(builtins=True) as registry:
            yield registry




# the checks import torch: they load on first use, so a pytest run stays light at start-up
_CHECKS = {
    "check_head": "simplug.testing.checks.head",
    "check_loss": "simplug.testing.checks.loss",
    "check_encoder": "simplug.testing.checks.encoder",
    "check_distance": "simplug.testing.checks.distance",
    "check_metric": "simplug.testing.checks.metric",
    "check_cache_backend": "simplug.testing.checks.cache_backend",
    "check_index": "simplug.testing.checks.index",
}


def __getattr__(name: str) -> Any:
    module = _CHECKS.get(name)
    if module is None:
        raise AttributeError(f"module 'simplug.testing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def check_component(kind: str, component: Any, name: str | None = None, **kwargs: Any) -> None:
    """Run the check for ``kind`` (``heads``, ``loss``, ...); see the ``check_*`` functions."""
    from simplug.registry import kinds, normalize_kind
    from simplug.registry.registry import import_target

    import_target(kinds.BY_NAME[normalize_kind(kind)].check)(component, name=name, **kwargs)
