"""Plugin discovery and the component registry.

Plugins are modules named by entry points in the ``simplug`` group. Loading a plugin
imports that module and calls its hooks; each hook calls ``register(name, target)``.
A component's class is imported only when it is first resolved, so discovery stays cheap
and never imports torch on its own.
"""
from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import io
import logging
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pluggy
from simplug.errors import (
    AmbiguousComponentError,
    ComponentNotFoundError,
    MissingPluginError,
    PluginError,
)
from simplug.registry import hookspecs, kinds

try:  # the backport follows the newest metadata behaviour on every Python
    import importlib_metadata as metadata
except ImportError:  # pragma: no cover
    from importlib import metadata  # type: ignore[no-redef]

log = logging.getLogger("simplug.registry")

ENTRY_POINT_GROUP = "simplug"
BUILTIN_DISTRIBUTION = "simplug"
LOCAL_DISTRIBUTION = "<local>"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]*$")


def normalize_kind(kind: str) -> str:
    """Accept singular and plural spellings: ``head`` and ``heads`` are the same kind."""
    key = kind.strip().lower().replace("-", "_")
    key = kinds.ALIASES.get(key, key)
    if key not in kinds.BY_NAME:
        raise ComponentNotFoundError(
            f"unknown component kind {kind!r}; kinds are: {', '.join(kinds.NAMES)}"
        )
    return key


def singular_kind(kind: str) -> str:
    """``heads`` -> ``head``, ``losses`` -> ``loss``: for messages about one component."""
    return kinds.BY_NAME[kind].singular if kind in kinds.BY_NAME else kind


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


# ---------------------------------------------------------------------- running plugin code
# A plugin's import and hooks are someone else's code running inside our command. Whatever it
# does there must not end the command or corrupt its output (``simplug list --json`` prints JSON
# on stdout): sys.exit() or a KeyboardInterrupt of its own makes the plugin broken, like any
# exception; what it prints is kept off stdout and logged as a warning (rude, not broken). A
# real Ctrl-C during that time must still stop the command, so a KeyboardInterrupt is told
# apart from one the plugin raised by a SIGINT handler that notes the real signal. (The fd-level
# redirect is process-wide: another thread's writes to fd 1 during a plugin's import go to
# stderr too.)


class _InterruptWatch:
    """Whether a real SIGINT arrived while plugin code ran (see ``_interrupt_watch``)."""

    def __init__(self, installed: bool, main_thread: bool) -> None:
        self.installed = installed
        self.main_thread = main_thread
        self.signalled = False

    def is_real(self, exc: BaseException) -> bool:
        """Was this KeyboardInterrupt a Ctrl-C, rather than raised by the plugin's code?"""
        if not isinstance(exc, KeyboardInterrupt):
            return False
        if not self.main_thread:
            return False  # Python delivers signals to the main thread only: another thread's is code
        if not self.installed:
            return True  # cannot tell: treat it as the user's, and stop
        return self.signalled


_active_watch: _InterruptWatch | None = None


@contextlib.contextmanager
def _interrupt_watch() -> Iterator[_InterruptWatch]:
    """Note real SIGINTs (the previous handler still runs) while plugin code runs; nested uses
    share the outermost watch. A real Ctrl-C that a plugin swallowed is raised again at the end."""
    global _active_watch
    if threading.current_thread() is not threading.main_thread():
        yield _InterruptWatch(installed=False, main_thread=False)
        return
    if _active_watch is not None:
        yield _active_watch
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler installed outside Python: leave it alone
        yield _InterruptWatch(installed=False, main_thread=True)
        return
    watch = _InterruptWatch(installed=True, main_thread=True)

    def on_sigint(signum: int, frame: Any) -> None:
        watch.signalled = True
        if previous is signal.SIG_IGN:
            return
        if callable(previous):
            previous(signum, frame)  # Python's default raises KeyboardInterrupt here
            return
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # SIG_DFL: end the process as it would have
        signal.raise_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, on_sigint)
    _active_watch = watch
    try:
        yield watch
    finally:
        _active_watch = None
        signal.signal(signal.SIGINT, previous)
    if watch.signalled and previous is signal.default_int_handler:
        raise KeyboardInterrupt  # a plugin caught the user's Ctrl-C: the command still stops


@contextlib.contextmanager
def _stdout_kept_clean(label: str) -> Iterator[None]:
    """Plugin code's stdout goes to a buffer, logged as a warning (Python-level writes), or to
    stderr (writes to file descriptor 1, e.g. from a subprocess), never to our stdout."""
    buffer = io.StringIO()
    saved_fd = None
    try:
        if sys.stdout is not None:
            sys.stdout.flush()  # what we printed before stays before
        saved_fd = os.dup(1)
        os.dup2(2, 1)
    except (OSError, ValueError):  # no fd 1 or 2 (a daemon, a closed stream): Python-level only
        if saved_fd is not None:
            os.close(saved_fd)
        saved_fd = None
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)
        text = buffer.getvalue().strip()
        if text:
            if len(text) > 2000:
                text = text[:2000] + " ..."
            log.warning("%s wrote to standard output while loading; it was kept off stdout: %s", label, text)


def _run_plugin_code(label: str, call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """``(call(), None)``, or ``(None, error)`` for anything the plugin's code raised — also
    SystemExit and a KeyboardInterrupt of its own. A real Ctrl-C propagates."""
    with _interrupt_watch() as watch, _stdout_kept_clean(label):
        try:
            return call(), None
        except BaseException as exc:  # noqa: BLE001 - plugin code may raise anything; none of it ends us
            if watch.is_real(exc):
                raise
            return None, exc


def _what_it_did(exc: BaseException) -> str:
    """What a plugin's code did, in words: ``called sys.exit(0)``, ``raised ValueError: ...``."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}) (a plugin must raise an exception, never exit the program)"
    if isinstance(exc, KeyboardInterrupt):
        return "raised KeyboardInterrupt itself (no Ctrl-C was pressed)"
    return f"raised {type(exc).__name__}: {exc}"


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
                label = f"{singular_kind(self.kind)} {self.name!r} from {self.distribution} {self.version}"
                loaded, exc = _run_plugin_code(label, lambda: import_target(self.target))
                if exc is not None:
                    raise PluginError(
                        f"{label} could not be imported ({self.target}): its import {_what_it_did(exc)}. "
                        f"Reinstall or upgrade that distribution, or disable it with SIMPLUG_DISABLE_PLUGINS="
                        f"{self.distribution}."
                    ) from exc
                self._loaded = loaded
            else:
                self._loaded = self.target
            self._check_base(self._loaded)
        return self._loaded

    def _check_base(self, loaded: Any) -> None:
        """A registered class must subclass its kind's base (a factory function is taken on trust)."""
        if not inspect.isclass(loaded):
            return
        base = import_target(kinds.BY_NAME[self.kind].base)
        if not issubclass(loaded, base):
            self._loaded = None
            raise PluginError(
                f"{singular_kind(self.kind)} {self.name!r} from {self.distribution} {self.version} is "
                f"{loaded.__module__}.{loaded.__qualname__}, which does not subclass "
                f"{base.__module__}.{base.__qualname__}; every registered {singular_kind(self.kind)} must. "
                f"Fix the plugin, or disable it with SIMPLUG_DISABLE_PLUGINS={self.distribution}."
            )

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
        self._components: dict[str, dict[str, list[ComponentRecord]]] = {k: {} for k in kinds.NAMES}
        self._lock = threading.RLock()
        self._discovered = False
        if autoload:
            self.load_entry_points()

    # ------------------------------------------------------------------ discovery
    @staticmethod
    def entry_points() -> list[Any]:
        """The installed entry points of the ``simplug`` group, each distribution once."""
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
        with self._lock, _interrupt_watch():  # one SIGINT handler for the whole discovery
            for ep in self.entry_points():
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
            for ep in self.entry_points():
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
        with _interrupt_watch():
            module, exc = _run_plugin_code(self._label(info), ep.load)
            if exc is not None:
                return self._broken(info, f"import of {ep.value!r} {_what_it_did(exc)}", exc, force_strict)
            self._register_module(module, info, force_strict)
        return info

    @staticmethod
    def _label(info: PluginInfo) -> str:
        return f"plugin {info.name!r} from {info.distribution} {info.version}".rstrip()

    def add_plugin(
        self,
        plugin: Any,
        name: str | None = None,
        distribution: str = LOCAL_DISTRIBUTION,
        version: str = "",
    ) -> PluginInfo:
        """Register a module or object with hook implementations directly (tests, notebooks)."""
        if isinstance(plugin, str):
            module_name = plugin
            plugin, exc = _run_plugin_code(f"plugin module {module_name!r}", lambda: importlib.import_module(module_name))
            if exc is not None:
                raise PluginError(f"plugin module {module_name!r} could not be imported: its import {_what_it_did(exc)}") from exc
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
            if opts is not None and attr not in hookspecs.HOOKS.values():
                unknown.append(attr)
        if unknown:
            expected = "; ".join(_hook_signature(h) for h in hookspecs.HOOKS.values())
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
            if attr in hookspecs.HOOKS.values()
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
        for kind, hook_name in hookspecs.HOOKS.items():
            caller = getattr(self._pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not module:
                    continue
                if hook_name not in info.hooks:
                    info.hooks.append(hook_name)
                register = self._make_register(kind, info)
                function, argnames = impl.function, impl.argnames
                _, exc = _run_plugin_code(
                    self._label(info), lambda: function(**{arg: register for arg in argnames})
                )
                if exc is not None:
                    self._broken(info, f"{hook_name} {_what_it_did(exc)}", exc, force_strict)
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
        wanted = [normalize_kind(kind)] if kind else list(kinds.NAMES)
        out = []
        for k in wanted:
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


def reset_registry(registry: Registry | None = None) -> Registry | None:
    """Drop (or replace) the process-wide registry, e.g. after installing a plugin; returns the
    one it replaced (``None`` when none was built yet), to put back later."""
    global _default
    with _default_lock:
        previous, _default = _default, registry
        return previous


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or ``None`` when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


_packages: dict[str, list[str]] | None = None
_looked_up: set[str] = set()


def distribution_of_module(module_name: str) -> tuple[str | None, str | None]:
    """The installed distribution (name, version) that provides a module, or ``(None, None)``."""
    global _packages
    top = module_name.split(".")[0]
    # the scan is slow (~1 s): once, and again for a name it did not know (installed since)
    if _packages is None or (top not in _packages and top not in _looked_up):
        _packages = metadata.packages_distributions()
        _looked_up.add(top)
    names = _packages.get(top) or []
    if not names:
        return None, None
    return names[0], installed_version(names[0])

