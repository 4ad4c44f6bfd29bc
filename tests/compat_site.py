"""Installing the Quaterion compatibility distribution (compat/quaterion) for the compat tests.

The main CI installs only the root project, so the compat tests install ``compat/quaterion``
(editable, no dependencies) into a site directory of their own, once per process. The site is
*active* (on ``sys.path`` with its ``.pth`` entries, so that its entry point is seen; simplug's
registry reset) only while a compat test module runs: the ``compat_site`` fixture activates it
for its module and deactivates it afterwards, so that the other tests of the session never see
the compat plugin. Once imported, ``quaterion`` and ``quaterion_models`` stay importable through
their packages' own paths.
"""
from __future__ import annotations

import importlib
import site
import sys
import tempfile
from pathlib import Path

import pytest

from plugin_site import pip_install_editable

ROOT = Path(__file__).resolve().parents[1]
COMPAT = ROOT / "compat" / "quaterion"
_site: Path | None = None
_added: list[str] = []


def _reset_registry() -> None:
    from simplug.registry import reset_registry

    importlib.invalidate_caches()
    reset_registry()


def install_compat() -> Path:
    """Install (once per process) and activate the compat site; returns its directory."""
    global _site
    if _site is None:
        target = Path(tempfile.mkdtemp(prefix="simplug-compat-site-"))
        pip_install_editable(target, COMPAT)
        _site = target
    if not _added:
        before = list(sys.path)
        site.addsitedir(str(_site))
        _added.extend(p for p in sys.path if p not in before)
        _reset_registry()
    return _site


def deactivate_compat() -> None:
    """Take the compat site off ``sys.path`` and reset the registry."""
    while _added:
        path = _added.pop()
        while path in sys.path:
            sys.path.remove(path)
    _reset_registry()


@pytest.fixture(scope="module")
def compat_site():
    """The compat distribution's site directory, active for the module's tests."""
    yield install_compat()
    deactivate_compat()


@pytest.fixture
def fresh_registry(compat_site):
    from simplug.registry import get_registry, reset_registry

    reset_registry()
    yield get_registry()
    reset_registry()
