"""Installing the Quaterion compatibility distribution (compat/quaterion) for the compat tests.

The main CI installs only the root project, so the compat tests install ``compat/quaterion``
(editable, no dependencies) into a site directory of their own, once per process, add it to
``sys.path`` with its ``.pth`` files, and reset simplug's registry so that the distribution's
entry point is seen.
"""
from __future__ import annotations

import site
import sys
import tempfile
from pathlib import Path

import pytest

from plugin_site import pip_install_editable

ROOT = Path(__file__).resolve().parents[1]
COMPAT = ROOT / "compat" / "quaterion"
_site: Path | None = None


def install_compat() -> Path:
    global _site
    if _site is None:
        target = Path(tempfile.mkdtemp(prefix="simplug-compat-site-"))
        pip_install_editable(target, COMPAT)
        site.addsitedir(str(target))
        from simplug.registry import reset_registry

        reset_registry()
        _site = target
    return _site


@pytest.fixture(scope="session")
def compat_site() -> Path:
    """The site directory holding the editable install of the compat distribution."""
    return install_compat()


@pytest.fixture
def fresh_registry(compat_site):
    from simplug.registry import get_registry, reset_registry

    reset_registry()
    yield get_registry()
    reset_registry()
