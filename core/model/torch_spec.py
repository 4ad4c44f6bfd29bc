"""Describe a ``torch.nn`` module tree as plain JSON, and rebuild it without pickle.

Standard layers are named by their ``torch.nn`` class name and their constructor
arguments, read back from the instance and checked by rebuilding it. Classes outside
``torch.nn`` are recorded as local code (see ``local_code``) with their ``get_config_dict()``.
Rebuilding only ever looks names up in ``torch.nn``; nothing else is imported.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from simplug.errors import ModelFormatError
from simplug.model.local_code import local_class_ref, resolve_local_ref
from torch import nn

_CONTAINERS = ("Sequential", "ModuleList")
_SKIP_PARAMS = {"self", "device", "dtype"}


def _torch_nn_name(cls: type) -> str | None:
    name = cls.__name__
    return name if getattr(nn, name, None) is cls else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    raise TypeError(type(value).__name__)


def constructor_args(module: nn.Module) -> dict[str, Any]:
    """Constructor arguments read back from a module's attributes."""
    if hasattr(module, "get_config_dict"):
        return dict(module.get_config_dict())
    args: dict[str, Any] = {}
    signature = inspect.signature(type(module).__init__)
    for param in signature.parameters.values():
        if param.name in _SKIP_PARAMS or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name == "bias" and hasattr(module, "bias"):
            args["bias"] = module.bias is not None
            continue
        if not hasattr(module, param.name):
            if param.default is inspect.Parameter.empty:
                raise TypeError(f"argument {param.name!r} is not stored on the module")
            continue
        args[param.name] = _jsonable(getattr(module, param.name))
    return args


def module_to_spec(module: nn.Module) -> dict[str, Any]:
    """JSON description of ``module``; raises ``ModelFormatError`` naming what to fix."""
    cls = type(module)
    nn_name = _torch_nn_name(cls)
    if nn_name in _CONTAINERS:
        return {"type": nn_name, "children": [module_to_spec(child) for child in module.children()]}
    try:
        args = constructor_args(module)
    except TypeError as exc:
        raise ModelFormatError(
            f"cannot record how to build {cls.__qualname__} ({exc}); give it a get_config_dict() "
            "method that returns its constructor arguments"
        ) from exc
    spec: dict[str, Any] = {"type": nn_name, "args": args} if nn_name else {"local": local_class_ref(cls), "args": args}
    try:
        # the check builds a throw-away module, whose initialisation draws from the global RNG:
        # describing a model (for a manifest or a cache fingerprint) must not shift a seeded run
        with torch.random.fork_rng(devices=[]):
            rebuilt = _build(spec, check_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the spec is not faithful
        raise ModelFormatError(
            f"cannot rebuild {cls.__qualname__} from {args}: {type(exc).__name__}: {exc}. Give it a "
            "get_config_dict() method that returns its constructor arguments"
        ) from exc
    if rebuilt is not None and (
        repr(rebuilt) != repr(module)
        or {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
        != {k: tuple(v.shape) for k, v in module.state_dict().items()}
    ):
        raise ModelFormatError(
            f"{cls.__qualname__} rebuilt from {args} differs from the original; give it a "
            "get_config_dict() method that returns its constructor arguments"
        )
    return spec


def _build(spec: dict[str, Any], check_only: bool = False) -> nn.Module | None:
    if "local" in spec:
        if check_only:
            return None  # the user's class is right here; loading checks it against the weights
        cls = resolve_local_ref(spec["local"])
    else:
        name = spec.get("type")
        cls = getattr(nn, name, None) if isinstance(name, str) else None
        if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
            raise ModelFormatError(f"{name!r} is not a torch.nn layer")
        if name in _CONTAINERS:
            return cls(*[_build(child) for child in spec.get("children", [])])
    return cls(**spec.get("args", {}))


def module_from_spec(spec: dict[str, Any]) -> nn.Module:
    module = _build(spec)
    assert module is not None
    return module


# ---------------------------------------------------------------------------- loading weights
def read_safetensors(data: bytes, where: str) -> dict[str, torch.Tensor]:
    """Tensors from the bytes of a safetensors file (never a pickle); ``ModelFormatError`` when
    the bytes are not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise ModelFormatError(f"{where} is not a readable safetensors file ({exc}); save the model again") from None


def check_weights_fit(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], where: str) -> None:
    """Every tensor the module has is in ``found`` with its exact shape and dtype, and nothing
    else is; else a ``ModelFormatError`` naming the first tensor that differs."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise ModelFormatError(
            f"{where} do not fit the module its config builds: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}. The config and the weights come from different models: save the model again"
        )
    for name, want in expected.items():
        got = found[name]
        if tuple(got.shape) != tuple(want.shape):
            raise ModelFormatError(
                f"{where}: tensor {name!r} has shape {tuple(got.shape)} but the config builds "
                f"{tuple(want.shape)}. The config and the weights disagree: save the model again"
            )
        if got.dtype != want.dtype:
            raise ModelFormatError(
                f"{where}: tensor {name!r} is {got.dtype} but the module holds {want.dtype}; weights are "
                "never cast on load. Save the model again from a module of that dtype"
            )


def build_with_weights(factory: Callable[[], nn.Module], state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """Build a module from its (untrusted) config and load ``state`` into it, without first
    allocating what the config asks for: the module is built on the meta device (no memory),
    its tensors' shapes and dtypes are checked against the weights file, and only then is it
    built for real, its size now bounded by the weights actually on disk."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            skeleton = factory()
    except ModelFormatError:
        raise
    except Exception:  # noqa: BLE001 - a constructor that cannot run on meta is checked after building
        skeleton = None
    if skeleton is not None:
        check_weights_fit(skeleton.state_dict(), state, where)
    module = factory()
    if skeleton is None:
        check_weights_fit(module.state_dict(), state, where)
    module.load_state_dict(state, strict=True)
    return module
