"""Describing a component for the manifest (plugin name, distribution, version, config) and
resolving a manifest entry back to its class, importing only the plugin it names."""
from __future__ import annotations

import warnings
from typing import Any

from simplug.errors import MissingPluginError, ModelFormatError
from simplug.model.local_code import (
    local_class_ref,
    resolve_local_ref,
)
from simplug.registry import singular_kind
from simplug.registry.registry import installed_version


def describe_component(registry: Any, kind: str, component: Any, role: str) -> dict[str, Any]:
    record = registry.find_instance(kind, component)
    config = component.get_config_dict() if hasattr(component, "get_config_dict") else {}
    if record is None:
        entry = {"role": role, "kind": kind, "source": "local", "class": local_class_ref(type(component))}
    else:
        entry = {
            "role": role,
            "kind": kind,
            "source": "plugin",
            "name": record.name,
            "plugin": record.plugin,
            "entry_point": record.entry_point,
            "distribution": record.distribution,
            "version": record.version,
        }
    entry["config"] = config
    return entry


def _shell_argument(text: str) -> str:
    """``text`` single-quoted for a POSIX shell, a quote inside it escaped (as ``shlex.quote``
    does, but always quoted, so the command reads the same whatever the name)."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def resolve_component(registry: Any, component: dict[str, Any]) -> type:
    if component.get("source") == "local":
        return resolve_local_ref(component["class"])
    if component.get("source") != "plugin":
        raise ModelFormatError(f"component {component.get('role')!r} has unknown source {component.get('source')!r}")
    dist, version, name = component["distribution"], component.get("version", ""), component["name"]
    requirement = f"{dist}=={version}" if version else dist
    installed = installed_version(dist)
    what = f"{singular_kind(component['kind'])} {name!r}"
    if installed is None:
        raise MissingPluginError(
            f"this model needs the {what} from the distribution {dist} {version}, which is not "
            f"installed: pip install {_shell_argument(requirement)} (simplug requirements MODEL lists every one)"
        )
    if version and installed != version:
        if installed.split(".")[0] != version.split(".")[0]:
            raise MissingPluginError(
                f"this model was saved with {dist} {version} but {installed} is installed (another "
                f"major version, which may build the {what} differently): pip install {_shell_argument(requirement)}"
            )
        warnings.warn(
            f"model saved with {dist} {version}, loading with {installed}", stacklevel=3
        )
    registry.load_entry_point(dist, component["plugin"], requirement=requirement)
    return registry.get(component["kind"], f"{dist}:{name}").load()


