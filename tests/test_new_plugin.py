"""``simplug new-plugin``: names are checked, nothing is overwritten, and every kind's package
installs and passes its own tests as generated."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from plugin_site import pip_install_editable, run_cli_in_site, run_pytest_in_site
from simplug.errors import ConfigError
from simplug.scaffold import create_plugin, plugin_names

KINDS = ["heads", "losses", "encoders", "distances", "metrics", "cache_backends"]


@pytest.mark.parametrize(
    "name,message",
    [
        ("bad name", "is not a valid distribution name"),
        ("-leading-dash", "is not a valid distribution name"),
        ("9lives", "not a Python identifier"),
        ("class", "not a Python identifier"),
        ("json", "shadows the standard library module json"),
        ("simplug", "clash with simplug itself"),
        ("torch", "a module named 'torch' is already importable"),
    ],
)
def test_bad_names_are_refused_with_the_reason(name, message):
    with pytest.raises(ConfigError, match=message):
        plugin_names(name, "heads")


def test_names_derived_from_the_distribution():
    names = plugin_names("simplug-Attention.Pool", "head")
    assert names["package"] == "simplug_attention_pool"
    assert names["component"] == "attention_pool"
    assert names["class_name"] == "AttentionPoolHead"
    assert names["kind"] == "heads"
    assert plugin_names("fancy-loss", "losses")["class_name"] == "FancyLoss"


def test_an_existing_directory_is_never_overwritten(tmp_path):
    (tmp_path / "simplug-taken").mkdir()
    (tmp_path / "simplug-taken" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists; refusing to overwrite it"):
        create_plugin("simplug-taken", "heads", str(tmp_path))
    assert (tmp_path / "simplug-taken" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["simplug-taken"]  # no staging left behind


def test_the_command_reports_errors_and_what_it_wrote(tmp_path):
    bad = run_cli("new-plugin", "json", "--kind", "heads", "--dir", str(tmp_path))
    assert bad.returncode == 1 and "shadows the standard library module json" in bad.stderr
    unknown_kind = run_cli("new-plugin", "simplug-x", "--kind", "widgets", "--dir", str(tmp_path))
    assert unknown_kind.returncode == 1 and "unknown component kind 'widgets'" in unknown_kind.stderr
    missing_dir = run_cli("new-plugin", "simplug-x", "--kind", "heads", "--dir", str(tmp_path / "nope"))
    assert missing_dir.returncode == 1 and "is not a directory" in missing_dir.stderr
    ok = run_cli("new-plugin", "simplug-x", "--kind", "heads", "--dir", str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert "the head 'x' (simplug_x.head.XHead)" in ok.stdout
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "simplug-x/README.md", "simplug-x/pyproject.toml", "simplug-x/simplug_x/__init__.py",
        "simplug-x/simplug_x/head.py", "simplug-x/simplug_x/hooks.py", "simplug-x/tests/test_x.py",
    ]
    pyproject = (tmp_path / "simplug-x" / "pyproject.toml").read_text()
    assert '[project.entry-points.simplug]\nx = "simplug_x.hooks"' in pyproject
    again = run_cli("new-plugin", "simplug-x", "--kind", "heads", "--dir", str(tmp_path))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr


def test_every_kind_installs_and_passes_its_own_tests(tmp_path):
    packages = [Path(create_plugin(f"simplug-gen-{kind.replace('_', '-')}", kind, str(tmp_path)).path) for kind in KINDS]
    site_dir = tmp_path / "site"
    pip_install_editable(site_dir, *packages)
    result = run_pytest_in_site(site_dir, *(p / "tests" for p in packages), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    written = sum(f.read_text().count("\ndef test_") for p in packages for f in (p / "tests").glob("test_*.py"))
    assert written >= 4 * len(KINDS)  # a conformance check, a behaviour test and two install tests each
    assert f"{written} passed" in result.stdout

    listing = run_cli_in_site(site_dir, "list", "--hooks")
    assert listing.returncode == 0, listing.stderr
    for kind in KINDS:
        row = next(line for line in listing.stdout.splitlines() if line.startswith(f"gen_{kind} "))
        assert f"simplug-gen-{kind.replace('_', '-')}" in row and f"register_{kind}" in row and " ok " in row
