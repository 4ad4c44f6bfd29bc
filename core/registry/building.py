"""Building components from plain configs that name registered components."""
from __future__ import annotations

import difflib
import inspect
import numbers
from typing import Any, Callable, Mapping

from simplug.errors import ConfigError, SimplugError
from simplug.registry import singular_kind
from simplug.registry.registry import get_registry


def positive_int(value: Any, name: str, minimum: int = 1, error: type[Exception] = ConfigError, why: str = "") -> int:
    """``value`` as an int, when it is a whole number (not a bool, not 2.0) of at least
    ``minimum``; otherwise ``error`` naming ``name``, the value and what is allowed. The one
    check behind every "must be a positive int" argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        allowed = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise error(f"{name} must be {allowed}{f' ({why})' if why else ''}, got {value!r}")
    return int(value)


def check_arguments(target: Callable[..., Any], args: Mapping[str, Any], what: str, skip: tuple[str, ...] = ()) -> None:
    """Raise ``ConfigError`` naming unknown or missing constructor arguments of ``target``."""
    signature = inspect.signature(target)
    params = {
        name: p
        for name, p in signature.parameters.items()
        if name not in ("self", *skip) and p.kind not in (p.VAR_POSITIONAL,)
    }
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    accepted = [n for n, p in params.items() if p.kind is not p.VAR_KEYWORD]
    for name in args:
        if name not in params and not takes_kwargs:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{what} got an unknown argument {name!r}.{hint} It accepts: "
                f"{', '.join(accepted) if accepted else '(no arguments)'}"
            )
    missing = [
        n for n, p in params.items()
        if p.default is p.empty and p.kind not in (p.VAR_KEYWORD,) and n not in args
    ]
    if missing:
        raise ConfigError(f"{what} needs the argument(s) {', '.join(missing)}")


def split_spec(spec: Any, kind: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``{"name": ..., **args}`` (args may also sit under ``"args"``)."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping):
        if "name" not in spec:
            raise ConfigError(f"the {kind} config {dict(spec)!r} has no 'name' naming a registered {kind}")
        args = {k: v for k, v in spec.items() if k not in ("name", "args")}
        args.update(spec.get("args") or {})
        return spec["name"], args
    raise ConfigError(f"a {kind} config is a name or a table with 'name'; got {type(spec).__name__}")


def build_component(kind: str, spec: Any, base: type, registry: Any = None, **extra: Any) -> Any:
    """An instance from a name, a ``{"name": ..., **args}`` table, or an instance of ``base``."""
    if isinstance(spec, base):
        return spec
    if registry is None:
        registry = get_registry()
    name, args = split_spec(spec, kind)
    cls = registry.resolve(kind, name)
    args = {**extra, **args}  # an explicit argument wins; a mismatch is then reported where it shows
    check_arguments(cls.__init__ if inspect.isclass(cls) else cls, args, f"{singular_kind(kind)} {name!r}")
    try:
        obj = cls(**args)
    except SimplugError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{kind} {name!r} rejected its arguments {args}: {exc}") from exc
    if not isinstance(obj, base):
        raise ConfigError(f"{kind} {name!r} built a {type(obj).__name__}, not a {base.__name__}")
    return obj
