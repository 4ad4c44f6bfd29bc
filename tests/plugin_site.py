"""Installing plugin packages into a temporary site directory and running code against it."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from conftest import run_python


def pip_install_editable(target: Path, *packages: Path) -> None:
    """``pip install -e`` each package into ``target`` (a site directory of its own)."""
    args = [arg for package in packages for arg in ("-e", str(package))]
    # building in an isolated environment costs ~10 s a package; reuse this one's setuptools if it has it
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade", *isolation,
         "--target", str(target), *args],
        check=True, capture_output=True, text=True, timeout=600,
    )


def in_site(site_dir: Path, code: str) -> str:
    """``code`` preceded by adding ``site_dir`` as a site directory, so its .pth files (editable
    installs) take effect, which PYTHONPATH alone would not do."""
    return f"import site, sys\nsite.addsitedir({str(site_dir)!r})\n{code}"


def run_in_site(site_dir: Path, code: str, cwd: Path | None = None, env_extra: dict[str, str] | None = None):
    return run_python(in_site(site_dir, code), cwd=str(cwd) if cwd else None, env_extra=env_extra)


def run_cli_in_site(site_dir: Path, *args: str):
    return run_in_site(site_dir, f"sys.argv = ['simplug', *{list(args)!r}]\nfrom simplug.cli import main\nmain()")


def run_pytest_in_site(site_dir: Path, *paths: Path, cwd: Path) -> subprocess.CompletedProcess:
    code = f"import pytest\nsys.exit(pytest.main({[str(p) for p in paths]!r} + ['-q', '-p', 'no:cacheprovider']))"
    return run_in_site(site_dir, code, cwd=cwd)
