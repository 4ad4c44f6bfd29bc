from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import run_python

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command.*?-->\s*```bash\n(.+?)\n```", readme, re.S)
    assert match, "README must mark its test command"
    command = match.group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines
    assert "pip install torch==2.13.0" in command.split("&&")[2]


def test_wheel_installs_everything_under_the_simplug_namespace(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )
    wheel = next(tmp_path.glob("simplug-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"simplug", next(t for t in tops if t.endswith(".dist-info"))}
    for module in ("simplug/plugins/heads/skip_connection.py", "simplug/model/similarity_model.py", "simplug/registry/registry.py", "simplug/serving/http.py"):
        assert module in names
    # every package of the source tree is in the wheel, and new-plugin's templates with it
    for package in sorted({p.parent for p in (ROOT / "core").rglob("__init__.py")}):
        assert f"simplug/{package.relative_to(ROOT / 'core').as_posix()}/__init__.py".replace("simplug/./", "simplug/") in names, package
    for template in (ROOT / "core" / "scaffold" / "templates").rglob("*.tmpl"):
        assert f"simplug/scaffold/{template.relative_to(ROOT / 'core' / 'scaffold').as_posix()}" in names, template
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "[simplug]" in entry_points and "heads = simplug.plugins.heads" in entry_points


def test_no_top_level_core_plugins_or_serving_module():
    result = run_python(
        "import importlib.util as u; print([n for n in ('core', 'plugins', 'serving') if u.find_spec(n)])", cwd="/"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
