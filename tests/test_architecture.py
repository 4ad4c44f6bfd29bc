"""The architecture of DESIGN's layout, enforced: import-linter's contracts (declared in
pyproject.toml) on the installed layout, no module importing another module's private name, and
imports inside functions only where a module must stay light."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# where each part of the ``simplug`` namespace lives in the repository
PARTS = {"": ROOT / "core", "plugins": ROOT / "plugins", "serving": ROOT / "serving"}
# modules whose job is to stay light (no torch at import): they import the rest when used
LAZY_MODULES = {
    "simplug",  # import simplug: the public names resolve on first access
    "simplug.cli.commands",  # simplug list / info read no torch
    "simplug.testing",  # pytest imports it at start-up in every project of the environment
    "simplug.serving",  # re-exports SimilarityModel on first access
}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for prefix, folder in PARTS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join(["simplug", *([prefix] if prefix else []), *parts])
            if prefix == "" and parts[:1] in (["plugins"], ["serving"]):
                continue
            found.append((name, path))
    return found


def _staged_package(target: Path) -> Path:
    """The ``simplug`` package as pip installs it (core/ with plugins/ and serving/ inside)."""
    package = target / "simplug"
    shutil.copytree(ROOT / "core", package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("plugins", "serving"):
        shutil.copytree(ROOT / name, package / name, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_import_linter_contracts_hold(tmp_path):
    pytest.importorskip("importlinter")
    staged = _staged_package(tmp_path / "site")
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()",
         str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=staged, env={"PYTHONPATH": str(staged), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


def test_the_contracts_are_not_vacuous(tmp_path):
    """A module that breaks a layer rule makes the linter fail: the check can fail."""
    pytest.importorskip("importlinter")
    staged = _staged_package(tmp_path / "site")
    (staged / "simplug" / "registry" / "sneaky.py").write_text("from simplug.training import trainable\n")
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=staged, env={"PYTHONPATH": str(staged), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode != 0
    assert "simplug.registry.sneaky -> simplug.training" in result.stdout


def _imports(tree: ast.AST) -> list[tuple[ast.ImportFrom | ast.Import, bool]]:
    """Every import with whether it sits inside a function."""
    found: list[tuple[ast.ImportFrom | ast.Import, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return found


def _is_type_checking_block(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in ast.walk(node):
                if hasattr(child, "lineno"):
                    lines.add(child.lineno)
    return lines


def test_no_module_imports_another_modules_private_name():
    offences = []
    for name, path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        for node, _ in _imports(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simplug"):
                if node.module == name or node.module.startswith(name + "."):
                    continue  # a package's own submodules
                for alias in node.names:
                    if alias.name.startswith("_"):
                        offences.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{alias.name}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                for part in (module or "").split("."):
                    if part.startswith("_") and not part.startswith("__"):
                        offences.append(f"{path.relative_to(ROOT)}:{node.lineno} imports private module {module}")
    assert not offences, "\n".join(offences)


def test_imports_inside_functions_only_where_a_module_must_stay_light():
    offences = []
    for name, path in _modules():
        if name in LAZY_MODULES:
            continue
        tree = ast.parse(path.read_text(), str(path))
        type_checking = _is_type_checking_block(tree)
        for node, in_function in _imports(tree):
            if not in_function or node.lineno in type_checking:
                continue
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if module and module.split(".")[0] == "simplug":
                offences.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module} inside a function")
    assert not offences, (
        "import simplug modules at the top of the module; an import inside a function is only for keeping "
        "a module light (add it to LAZY_MODULES with the reason):\n" + "\n".join(offences)
    )
