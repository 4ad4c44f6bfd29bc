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
from string import Template

import simplug
from simplug.errors import ConfigError
from simplug.registry import normalize_kind, singular_kind
from simplug.scaffold.templates import COMPONENTS

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
    suffix = COMPONENTS[kind]["suffix"]
    camel = "".join(part[:1].upper() + part[1:] for part in component.split("_") if part)
    class_name = camel if camel.endswith(suffix) else camel + suffix
    return {
        "distribution": name,
        "package": package,
        "kind": kind,
        "singular": singular_kind(kind),
        "component": component,
        "class_name": class_name,
        "module": COMPONENTS[kind]["module"],
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
    spec = COMPONENTS[names["kind"]]
    values.update({key: Template(spec[key]).substitute(values) for key in ("usage", "summary", "check")})
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{names['package']}/__init__.py": INIT,
        f"{names['package']}/hooks.py": HOOKS,
        f"{names['package']}/{names['module']}.py": spec["component"],
        f"tests/test_{names['component']}.py": spec["tests"],
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


PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$distribution"
version = "0.1.0"
description = "A $singular for simplug: $component"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["$simplug_requirement"]

[project.optional-dependencies]
test = ["pytest>=8"]

# simplug finds plugins through this group: the name on the left is the plugin's name,
# recorded in every saved model that uses one of its components.
[project.entry-points.simplug]
$component = "$package.hooks"

[tool.setuptools]
packages = ["$package"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

INIT = '''\
"""$distribution: a simplug plugin providing the $singular '$component'."""
'''

HOOKS = '''\
"""The plugin's hooks: simplug imports this module to list and find its components.

Keep it light: name the component by a lazy "module:Class" target so that listing plugins
does not import torch or the component's module.
"""
from simplug import hookimpl


@hookimpl
def $hook(register):
    register("$component", "$package.$module:$class_name", summary="$summary")
'''

README = '''\
# $distribution

A simplug plugin: the $singular `$component`
(`$package.$module.$class_name`).

## Install

```bash
pip install -e .          # from this directory, while you work on it
simplug list --kind $kind # shows '$component' with this distribution and version
```

## Use

$usage

## Test

```bash
pip install -e ".[test]"
python -m pytest
```

The tests use `simplug.testing` (installed with simplug as a pytest plugin): `${check}`
runs the contract every $singular must keep, and the `isolated_registry` fixture with
`registered_plugin` registers this plugin in a registry of its own.

## Versions

A saved model records this distribution's name and version for each component it uses.
Serving it with another version warns; with another major version it is an error. Bump the
major version when a change alters what a saved configuration builds or how saved weights
are read.
'''
