from __future__ import annotations

import json

from conftest import run_cli, run_python


def test_list_table_and_kind_filter():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header == ["kind", "name", "plugin", "distribution", "version", "status"]
    assert "skip_connection" in result.stdout and "triplet" in result.stdout
    heads = run_cli("list", "--kind", "head", "--json")
    rows = json.loads(heads.stdout)
    assert rows and {r["kind"] for r in rows} == {"heads"}
    assert {"name", "plugin", "distribution", "version", "status", "entry_point"} <= set(rows[0])


def test_list_with_unknown_kind_is_a_clear_error():
    result = run_cli("list", "--kind", "gizmo")
    assert result.returncode != 0
    assert "unknown component kind" in result.stderr and "heads" in result.stderr


def test_list_imports_no_torch():
    code = (
        "import sys\n"
        "sys.argv = ['simplug', 'list', '--json']\n"
        "from simplug.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "TORCH False" in result.stdout
    assert json.loads(result.stdout.rsplit("TORCH", 1)[0])


def test_import_simplug_is_light():
    result = run_python("import sys, simplug; from simplug import hookimpl; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning', 'numpy')))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_list_hooks_shows_what_each_plugin_implements():
    result = run_cli("list", "--hooks", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["plugin"]: p for p in json.loads(result.stdout) if p["distribution"] == "simplug"}
    assert plugins["heads"]["hooks"] == ["register_heads"]
    assert plugins["losses"]["hooks"] == ["register_losses"]
    table = run_cli("list", "--hooks")
    assert "register_cache_backends" in table.stdout
