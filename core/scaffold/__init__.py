"""``simplug new-plugin``: write a ready-to-install plugin package for one component kind.

The package has its own ``pyproject.toml`` (with the ``simplug`` entry point), a hooks
module, one working component, tests that use ``simplug.testing`` and a README. It installs
with ``pip install -e`` and passes its own tests as generated. Imports no torch.
"""
from __future__ import annotations

import importlib.util
import keyword
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from importlib.resources import files as package_files
from string import Template

import simplug
from simplug.errors import ConfigError
from simplug.registry import normalize_kind, singular_kind
from simplug.registry.kinds import BY_NAME

# PEP 508 distribution names: letters, digits, '-', '_', '.', starting and ending alphanumeric
_DISTRIBUTION_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


@dataclass
class NewPlugin:
    """What ``create_plugin`` wrote."""

    path: str
    distribution: str
    package: str
    kind: str
    module: str
    component: str
    class_name: str
    files: list[str] = field(default_factory=list)


def plugin_names(name: str, kind: str) -> dict[str, str]:
    """The names derived from a distribution name, or a ``ConfigError`` saying what to change."""
    if not isinstance(name, str) or not _DISTRIBUTION_RE.match(name):
        raise ConfigError(
            f"{name!r} is not a valid distribution name: use letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit (e.g. 'simplug-attention-head')"
        )
    package = re.sub(r"[-.]+", "_", name).lower()
    if not package.isidentifier() or keyword.iskeyword(package):
        raise ConfigError(
            f"{name!r} would give the import name {package!r}, which is not a Python identifier: "
            "start the name with a letter (e.g. 'simplug-' + your name)"
        )
    if package == "simplug" or package.startswith("simplug_plugins"):
        raise ConfigError(f"{name!r} would clash with simplug itself; choose another name")
    if package in sys.stdlib_module_names:
        raise ConfigError(
            f"{name!r} would give the import name {package!r}, which shadows the standard library "
            f"module {package}; choose another name (e.g. 'simplug-{name}')"
        )
    if importlib.util.find_spec(package) is not None:
        raise ConfigError(
            f"a module named {package!r} is already importable here; the plugin's import name would "
            f"clash with it: choose another name (e.g. 'simplug-{name}')"
        )
    kind = normalize_kind(kind)
    component = package[len("simplug_"):] if package.startswith("simplug_") and package != "simplug_" else package
    suffix = BY_NAME[kind].class_suffix
    camel = "".join(part[:1].upper() + part[1:] for part in component.split("_") if part)
    class_name = camel if camel.endswith(suffix) else camel + suffix
    return {
        "distribution": name,
        "package": package,
        "kind": kind,
        "singular": singular_kind(kind),
        "component": component,
        "class_name": class_name,
        "module": BY_NAME[kind].module,
        "check": BY_NAME[kind].check.rpartition(":")[2],
        "hook": f"register_{kind}",
    }


def create_plugin(name: str, kind: str, directory: str = ".") -> NewPlugin:
    """Write the package for ``name`` into ``directory/name``; never overwrites anything."""
    names = plugin_names(name, kind)
    parent = os.path.abspath(directory)
    target = os.path.join(parent, name)
    if os.path.lexists(target):
        raise ConfigError(f"{target} already exists; refusing to overwrite it: remove it, or pick another "
                          "name or --dir")
    if not os.path.isdir(parent):
        raise ConfigError(f"--dir {directory!r} is not a directory; create it first")
    major, minor = simplug.__version__.split(".")[:2]
    values = {**names, "simplug_requirement": f"simplug>={major}.{minor}", "simplug_version": simplug.__version__}
    for key in ("usage", "summary"):
        values[key] = Template(_template(names["kind"], f"{key}.{'md' if key == 'usage' else 'txt'}")).substitute(values)
    files = {
        "pyproject.toml": _template("common", "pyproject.toml"),
        "README.md": _template("common", "README.md"),
        f"{names['package']}/__init__.py": _template("common", "__init__.py"),
        f"{names['package']}/hooks.py": _template("common", "hooks.py"),
        f"{names['package']}/{names['module']}.py": _template(names["kind"], "component.py"),
        f"tests/test_{names['component']}.py": _template(names["kind"], "test_component.py"),
    }
    # write into a temporary sibling and rename, so a failure never leaves half a package
    staging = tempfile.mkdtemp(prefix=f".{name}.", dir=parent)
    try:
        for rel, template in files.items():
            path = os.path.join(staging, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(Template(template).substitute(values))
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return NewPlugin(
        path=target,
        distribution=name,
        package=names["package"],
        kind=names["kind"],
        module=f"{names['package']}.{names['module']}",
        component=names["component"],
        class_name=names["class_name"],
        files=sorted(files),
    )


def _template(folder: str, name: str) -> str:
    """A template shipped as package data: ``templates/<kind or common>/<name>.tmpl``."""
    resource = package_files("simplug.scaffold").joinpath("templates", folder, f"{name}.tmpl")
    if not resource.is_file():
        raise ConfigError(f"simplug new-plugin has no template for {folder!r} yet ({name}); pick another --kind")
    return resource.read_text(encoding="utf-8")
