from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# The Ctrl-C tests send SIGINT for real. A shell that starts pytest in the background ignores
# SIGINT, and processes inherit that; Python then never raises KeyboardInterrupt. Catching it here
# also gives every child process the default action back (exec resets caught signals).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TESTS = Path(__file__).parent
PLUGIN_PACKAGES = TESTS / "plugin_packages"


def run_python(code: str, env_extra: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter of this environment."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def run_cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "simplug.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def pip_install_target(package: Path, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(package)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def broken_plugin_site(tmp_path_factory) -> Path:
    """A directory holding the installed ``simplug-broken-plugin`` (put it on PYTHONPATH)."""
    target = tmp_path_factory.mktemp("broken-site")
    pip_install_target(PLUGIN_PACKAGES / "simplug_broken_plugin", target)
    return target


@pytest.fixture
def fresh_registry():
    """The process-wide registry is rebuilt for the test and dropped after it."""
    from simplug.registry import reset_registry

    reset_registry()
    yield
    reset_registry()
