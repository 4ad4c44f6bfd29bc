"""Plugin discovery and the component registry.

Plugins are modules named by entry points in the ``simplug`` group. Loading a plugin
imports that module and calls its hooks; each hook calls ``register(name, target)``.
A component's class is imported only when it is first resolved, so discovery stays cheap
and never imports torch on its own.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from simplug.registry import hookspecs
from simplug.errors import (
    AmbiguousComponentError,
    ComponentNotFoundError,
    MissingPluginError,
    PluginError,
)

try:  # the backport follows the newest metadata behaviour on every Python
    import importlib_metadata as metadata
except ImportError:  # pragma: no cover
    from importlib import metadata  # type: ignore[no-redef]

log = logging.getLogger("simplug.registry")

ENTRY_POINT_GROUP = "simplug"
BUILTIN_DISTRIBUTION = "simplug"
LOCAL_DISTRIBUTION = "<local>"

_KIND_ALIASES = {
    "encoder": "encoders",
    "head": "heads",
    "loss": "losses",
    "distance": "distances",
    "metric": "metrics",
    "cache": "cache_backends",
    "cache_backend": "cache_backends",
    "caches": "cache_backends",
    "index": "indexes",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]*$")


def normalize_kind(kind: str) -> str:
    """Accept singular and plural spellings: ``head`` and ``heads`` are the same kind."""
    key = kind.strip().lower().replace("-", "_")
    key = _KIND_ALIASES.get(key, key)
    if key not in hookspecs.KINDS:
        raise ComponentNotFoundError(
            f"unknown component kind {kind!r}; kinds are: {', '.join(hookspecs.KINDS)}"
        )
    return key


def singular_kind(kind: str) -> str:
    """``heads`` -> ``head``, ``losses`` -> ``loss``: for messages about one component."""
    return {"losses": "loss", "indexes": "index"}.get(kind, kind[:-1])


def normalize_distribution(name: str) -> str:
    """PEP 503 normalisation, so ``My_Plugin`` and ``my-plugin`` name one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def import_target(target: str) -> Any:
    """Import a ``"module:attr"`` (or ``"module:Outer.Inner"``) target."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"lazy target {target!r} is not of the form 'module:attr'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class PluginInfo:
    """One plugin module, as found through an entry point or added by hand."""

    name: str
    module: str
    distribution: str
    version: str
    status: str = "ok"  # ok | broken | disabled
    error: str | None = None
    hooks: list[str] = field(default_factory=list)

    @property
    def requirement(self) -> str:
        if self.distribution == LOCAL_DISTRIBUTION:
            return ""
        return f"{self.distribution}=={self.version}" if self.version else self.distribution


@dataclass
class ComponentRecord:
    """Where a component comes from: everything a saved model needs to find it again."""

    kind: str
    name: str
    target: Any  # class or "module:attr"
    summary: str
    plugin: str
    entry_point: str
    distribution: str
    version: str
    _loaded: Any = field(default=None, repr=False)

    @property
    def qualified_name(self) -> str:
        return f"{self.distribution}:{self.name}"

    @property
    def target_path(self) -> str:
        if isinstance(self.target, str):
            return self.target
        return f"{self.target.__module__}:{self.target.__qualname__}"

    def load(self) -> Any:
        """Import the component's class on first use."""
        if self._loaded is None:
            if isinstance(self.target, str):
                try:
                    self._loaded = import_target(self.target)
                except Exception as exc:
                    raise PluginError(
                        f"{singular_kind(self.kind)} {self.name!r} "
                        f"from {self.distribution} {self.version} could not be imported "
                        f"({self.target}): {type(exc).__name__}: {exc}. Reinstall or upgrade "
                        f"that distribution, or disable it with SIMPLUG_DISABLE_PLUGINS="
                        f"{self.distribution}."
                    ) from exc
            else:
                self._loaded = self.target
        return self._loaded

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "entry_point": self.entry_point,
            "distribution": self.distribution,
            "version": self.version,
            "target": self.target_path,
            "summary": self.summary,
        }


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {normalize_distribution(item) for item in raw.split(",") if item.strip()}


def _strict_from_env() -> bool:
    return os.environ.get("SIMPLUG_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


def _hook_signature(hook_name: str) -> str:
    spec = getattr(hookspecs, hook_name)
    return f"{hook_name}{inspect.signature(spec)}"


def _takes_register_only(function: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False
    return [p.name for p in params] == ["register"] and params[0].kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


class Registry:
    """Components registered by plugins, grouped by kind.

    ``Registry()`` discovers every installed plugin; ``Registry(autoload=False)`` starts empty,
    for serving (which loads only the entry points a saved model names) and for tests.
    """

    def __init__(self, autoload: bool = True, strict: bool | None = None):
        self.strict = _strict_from_env() if strict is None else strict
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, PluginInfo] = {}
        self._components: dict[str, dict[str, list[ComponentRecord]]] = {k: {} for k in hookspecs.KINDS}
        self._lock = threading.RLock()
        self._discovered = False
        if autoload:
            self.load_entry_points()

    # ------------------------------------------------------------------ discovery
    @staticmethod
    def _entry_points() -> list[Any]:
        seen: set[tuple[str, str]] = set()
        result = []
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist_name = ep.dist.metadata["Name"] if ep.dist is not None else LOCAL_DISTRIBUTION
            key = (normalize_distribution(dist_name), ep.name)
            if key in seen:  # the same distribution found twice on sys.path
                continue
            seen.add(key)
            result.append(ep)
        return result

    def load_entry_points(self) -> None:
        """Load every installed plugin, honouring SIMPLUG_LOAD_PLUGINS / SIMPLUG_DISABLE_PLUGINS."""
        only = _env_list("SIMPLUG_LOAD_PLUGINS")
        disabled = _env_list("SIMPLUG_DISABLE_PLUGINS") or set()
        with self._lock:
            for ep in self._entry_points():
                dist_name = ep.dist.metadata["Name"] if ep.dist is not None else LOCAL_DISTRIBUTION
                norm = normalize_distribution(dist_name)
                allowed = norm == BUILTIN_DISTRIBUTION or only is None or norm in only
                if not allowed or norm in disabled or normalize_distribution(ep.name) in disabled:
                    why = "SIMPLUG_DISABLE_PLUGINS" if allowed else "SIMPLUG_LOAD_PLUGINS"
                    self._record_plugin(ep, dist_name, status="disabled", error=f"not loaded ({why})")
                    continue
                self._load_entry_point(ep, dist_name)
            self._discovered = True

    def load_entry_point(self, distribution: str, name: str, requirement: str = "") -> PluginInfo:
        """Load one plugin by distribution and entry-point name (how serving loads a model)."""
        norm = normalize_distribution(distribution)
        with self._lock:
            key = f"{norm}:{name}"
            if key in self._plugins and self._plugins[key].status == "ok":
                return self._plugins[key]
            for ep in self._entry_points():
                dist_name = ep.dist.metadata["Name"] if ep.dist is not None else LOCAL_DISTRIBUTION
                if normalize_distribution(dist_name) == norm and ep.name == name:
                    info = self._load_entry_point(ep, dist_name, force_strict=True)
                    return info
        wanted = requirement or distribution
        raise MissingPluginError(
            f"plugin {name!r} from distribution {distribution!r} is not installed; "
            f"install it with: pip install '{wanted}'"
        )

    def _record_plugin(self, ep: Any, dist_name: str, **kwargs: Any) -> PluginInfo:
        version = ep.dist.version if ep.dist is not None else ""
        info = PluginInfo(name=ep.name, module=ep.value, distribution=dist_name, version=version, **kwargs)
        self._plugins[f"{normalize_distribution(dist_name)}:{ep.name}"] = info
        return info

    def _load_entry_point(self, ep: Any, dist_name: str, force_strict: bool = False) -> PluginInfo:
        info = self._record_plugin(ep, dist_name)
        try:
            module = ep.load()
        except Exception as exc:
            return self._broken(info, f"import of {ep.value!r} failed: {type(exc).__name__}: {exc}", exc, force_strict)
        self._register_module(module, info, force_strict)
        return info

    def add_plugin(
        self,
        plugin: Any,
        name: str | None = None,
        distribution: str = LOCAL_DISTRIBUTION,
        version: str = "",
    ) -> PluginInfo:
        """Register a module or object with hook implementations directly (tests, notebooks)."""
        if isinstance(plugin, str):
            plugin = importlib.import_module(plugin)
        plugin_name = name or getattr(plugin, "__name__", type(plugin).__name__)
        module_name = getattr(plugin, "__name__", type(plugin).__qualname__)
        info = PluginInfo(name=plugin_name, module=module_name, distribution=distribution, version=version)
        with self._lock:
            self._plugins[f"{normalize_distribution(distribution)}:{plugin_name}"] = info
            self._register_module(plugin, info, force_strict=False)
        return info

    def remove_plugin(self, info: PluginInfo) -> None:
        """Forget a plugin and every component it registered (``simplug.testing`` uses this)."""
        plugin_key = f"{normalize_distribution(info.distribution)}:{info.name}"
        with self._lock:
            self._plugins.pop(plugin_key, None)
            if self._pm.get_plugin(plugin_key) is not None:
                self._pm.unregister(name=plugin_key)
            for by_name in self._components.values():
                for name in list(by_name):
                    by_name[name] = [
                        r for r in by_name[name] if not (r.plugin == info.name and r.distribution == info.distribution)
                    ]
                    if not by_name[name]:
                        del by_name[name]

    def _broken(self, info: PluginInfo, message: str, exc: BaseException | None, force_strict: bool) -> PluginInfo:
        info.status = "broken"
        info.error = message
        # drop whatever the plugin managed to register before it failed
        for by_name in self._components.values():
            for records in by_name.values():
                records[:] = [r for r in records if not (r.plugin == info.name and r.distribution == info.distribution)]
        text = (
            f"plugin {info.name!r} from {info.distribution} {info.version} is broken: {message}. "
            f"Fix or uninstall it, or skip it with SIMPLUG_DISABLE_PLUGINS={info.distribution}"
        )
        if self.strict or force_strict:
            raise PluginError(text) from exc
        log.warning(text)
        return info

    def _register_module(self, module: Any, info: PluginInfo, force_strict: bool) -> None:
        unknown = []
        for attr in dir(module):
            opts = self._pm.parse_hookimpl_opts(module, attr)
            if opts is not None and attr not in hookspecs.KINDS.values():
                unknown.append(attr)
        if unknown:
            expected = "; ".join(_hook_signature(h) for h in hookspecs.KINDS.values())
            self._broken(
                info,
                f"implements unknown hook(s) {', '.join(unknown)}; the hooks are: {expected}",
                None,
                force_strict,
            )
            return
        wrong = [
            f"{attr}{inspect.signature(getattr(module, attr))} (expected {_hook_signature(attr)})"
            for attr in dir(module)
            if attr in hookspecs.KINDS.values()
            and self._pm.parse_hookimpl_opts(module, attr) is not None
            and not _takes_register_only(getattr(module, attr))
        ]
        if wrong:
            # pluggy accepts a hook that takes fewer arguments than the spec, but a hook without
            # ``register`` can register nothing: report both cases with the signature to write
            self._broken(info, f"hook(s) with the wrong arguments: {'; '.join(wrong)}", None, force_strict)
            return
        plugin_key = f"{normalize_distribution(info.distribution)}:{info.name}"
        try:
            if self._pm.get_plugin(plugin_key) is None:
                self._pm.register(module, name=plugin_key)
        except pluggy.PluginValidationError as exc:
            self._broken(info, f"invalid hook implementation: {exc}", exc, force_strict)
            return
        for kind, hook_name in hookspecs.KINDS.items():
            caller = getattr(self._pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not module:
                    continue
                if hook_name not in info.hooks:
                    info.hooks.append(hook_name)
                register = self._make_register(kind, info)
                try:
                    impl.function(**{arg: register for arg in impl.argnames})
                except Exception as exc:
                    self._broken(info, f"{hook_name} raised {type(exc).__name__}: {exc}", exc, force_strict)
                    return

    def _make_register(self, kind: str, info: PluginInfo) -> Callable[..., None]:
        def register(name: str, target: Any, summary: str = "") -> None:
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise ValueError(
                    f"component name {name!r} is invalid: use letters, digits, '_', '.', '@' or '-' "
                    "(':' is reserved for 'distribution:name')"
                )
            if isinstance(target, str):
                if ":" not in target:
                    raise ValueError(f"lazy target {target!r} for {name!r} must be 'module:attr'")
            elif not inspect.isclass(target) and not callable(target):
                raise ValueError(f"target for {name!r} must be a class or a 'module:attr' string")
            if not summary and not isinstance(target, str):
                summary = (inspect.getdoc(target) or "").split("\n")[0]
            record = ComponentRecord(
                kind=kind,
                name=name,
                target=target,
                summary=summary,
                plugin=info.name,
                entry_point=info.module,
                distribution=info.distribution,
                version=info.version,
            )
            with self._lock:
                records = self._components[kind].setdefault(name, [])
                records[:] = [
                    r for r in records if not (r.plugin == info.name and r.distribution == info.distribution)
                ]
                records.append(record)

        return register

    # ------------------------------------------------------------------ queries
    @property
    def plugins(self) -> list[PluginInfo]:
        return list(self._plugins.values())

    def components(self, kind: str | None = None) -> list[ComponentRecord]:
        kinds = [normalize_kind(kind)] if kind else list(hookspecs.KINDS)
        out = []
        for k in kinds:
            for name in sorted(self._components[k]):
                out.extend(self._components[k][name])
        return out

    def names(self, kind: str) -> list[str]:
        kind = normalize_kind(kind)
        return sorted(name for name, records in self._components[kind].items() if records)

    def get(self, kind: str, name: str) -> ComponentRecord:
        """Find a component by name, or by ``distribution:name`` when two plugins share a name."""
        kind = normalize_kind(kind)
        if not isinstance(name, str) or not name:
            raise ComponentNotFoundError(f"a {kind} name must be a non-empty string, got {name!r}")
        distribution = None
        short = name
        if ":" in name:
            distribution, _, short = name.partition(":")
            distribution = normalize_distribution(distribution)
        records = self._components[kind].get(short, [])
        if distribution is not None:
            records = [r for r in records if normalize_distribution(r.distribution) == distribution]
        if len(records) == 1:
            return records[0]
        if len(records) > 1:
            choices = ", ".join(f"'{r.qualified_name}' ({r.distribution} {r.version})" for r in records)
            raise AmbiguousComponentError(
                f"{kind} {short!r} is registered by more than one distribution: {choices}. "
                f"Pick one by writing 'distribution:name', e.g. '{records[-1].qualified_name}'"
            )
        raise ComponentNotFoundError(self._not_found_message(kind, name, short))

    def _not_found_message(self, kind: str, name: str, short: str) -> str:
        known = self.names(kind)
        close = difflib.get_close_matches(short, known, n=3, cutoff=0.5)
        parts = [f"no {kind} named {name!r} is registered."]
        if close:
            parts.append(f"Did you mean: {', '.join(close)}?")
        parts.append(f"Installed {kind}: {', '.join(known) if known else '(none)'}.")
        broken = [p for p in self._plugins.values() if p.status == "broken"]
        if broken:
            parts.append(
                "Broken plugins that may have provided it: "
                + "; ".join(f"{p.name} ({p.distribution} {p.version}): {p.error}" for p in broken)
                + "."
            )
        if not self._discovered:
            parts.append("(this registry did not load installed plugins)")
        return " ".join(parts)

    def resolve(self, kind: str, name: str) -> Any:
        """The class (or factory) registered under ``name``."""
        return self.get(kind, name).load()

    def find_class(self, kind: str, cls: type) -> ComponentRecord | None:
        """The record of a class, without importing anything that is not imported already."""
        kind = normalize_kind(kind)
        path = f"{cls.__module__}:{cls.__qualname__}"
        candidates = []
        for records in self._components[kind].values():
            for record in records:
                if record.target is cls or record._loaded is cls:
                    candidates.append(record)
                elif isinstance(record.target, str):
                    if record.target == path:
                        candidates.append(record)
                    elif record.target.partition(":")[0] in sys.modules:
                        try:
                            if record.load() is cls:
                                candidates.append(record)
                        except PluginError:
                            continue
        if not candidates:
            return None
        # prefer the name the class is known under in its own distribution's plugin
        candidates.sort(key=lambda r: (r.distribution == LOCAL_DISTRIBUTION, r.name))
        return candidates[0]

    def find_instance(self, kind: str, obj: Any) -> ComponentRecord | None:
        return self.find_class(kind, type(obj))


_default: Registry | None = None
_default_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry with every installed plugin loaded (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Registry()
        return _default


def reset_registry(registry: Registry | None = None) -> None:
    """Drop (or replace) the process-wide registry, e.g. after installing a plugin."""
    global _default
    with _default_lock:
        _default = registry


def iter_kinds() -> Iterable[str]:
    return iter(hookspecs.KINDS)
