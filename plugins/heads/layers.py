"""Layers described in a config, for the sequential and switch heads.

A layer is one of:

- a ``torch.nn`` layer by class name: ``"ReLU"`` or ``{"type": "Linear", "out_features": 64}``
  (arguments flat or under ``"args"``). A width argument the layer needs
  (``in_features``, ``num_features``, ``normalized_shape``) is filled in from the width of
  the previous layer when it is left out;
- an activation from the allow-list in ``activations`` by its lower-case name: ``"gelu"``;
- a registered head: ``{"head": "skip_connection", "n_layers": 2}`` (its
  ``input_embedding_size`` is filled in);
- in Python, a module instance (a ``torch.nn`` layer or an ``EncoderHead``).

Saved, a ``torch.nn`` layer is the JSON of ``simplug.model.torch_spec`` (its class name and
constructor arguments, rebuilt by looking the name up in ``torch.nn``); a registered head is
recorded like a manifest component (name, plugin, distribution, version, config) and
rebuilt through the same lookup as a saved model's own components, so nothing is unpickled
and no module path from the file is imported.
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping

import torch
from simplug.components.head import EncoderHead
from simplug.errors import ConfigError
from simplug.model.components import describe_component, resolve_component
from simplug.model.torch_spec import module_from_spec, module_to_spec
from simplug.plugins.heads.activations import ACTIVATIONS
from simplug.registry import Registry, get_registry
from simplug.registry.building import build_component
from torch import nn

_CONTAINERS = {"Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict", "Module"}
_WIDTH_ARGUMENTS = ("in_features", "num_features", "normalized_shape")


def _torch_layer_class(name: str, where: str) -> type:
    cls = getattr(nn, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)) or name in _CONTAINERS or name.startswith("_"):
        raise ConfigError(
            f"{where}: {name!r} is not a torch.nn layer; name one by its class (e.g. 'Linear', 'ReLU', "
            f"'LayerNorm', 'Dropout'), an activation ({', '.join(ACTIVATIONS)}), or a registered head "
            "as {'head': NAME, ...}"
        )
    return cls


def _build_torch_layer(spec: Mapping[str, Any], width: int, where: str) -> nn.Module:
    name = spec["type"]
    if not isinstance(name, str):
        raise ConfigError(f"{where}: 'type' must be a torch.nn class name, got {name!r}")
    cls = _torch_layer_class(name, where)
    args = {k: v for k, v in spec.items() if k not in ("type", "args")}
    args.update(spec.get("args") or {})
    params = inspect.signature(cls.__init__).parameters
    for width_arg in _WIDTH_ARGUMENTS:
        if width_arg in params and width_arg not in args:
            args[width_arg] = width
    try:
        return module_from_spec({"type": name, "args": args})
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{where}: torch.nn.{name}({args}) failed: {exc}") from exc


def _build_saved_head(entry: Mapping[str, Any], where: str) -> EncoderHead:
    cls = resolve_component(Registry(autoload=False, strict=True), dict(entry))
    head = cls(**entry.get("config", {}))
    if not isinstance(head, EncoderHead):
        raise ConfigError(f"{where}: {entry.get('name')!r} did not build an EncoderHead")
    return head


def build_layer(spec: Any, width: int, where: str) -> nn.Module:
    """A module for one layer description taking inputs of ``width`` features."""
    if isinstance(spec, nn.Module):
        layer = spec
    elif isinstance(spec, str):
        layer = ACTIVATIONS[spec]() if spec in ACTIVATIONS else _build_torch_layer({"type": spec}, width, where)
    elif isinstance(spec, Mapping) and "head" in spec:
        args = {k: v for k, v in spec.items() if k not in ("head", "args")}
        args.update(spec.get("args") or {})
        try:
            layer = build_component("heads", {"name": spec["head"], **args}, EncoderHead, input_embedding_size=width)
        except LookupError as exc:  # an unknown or ambiguous head name
            raise ConfigError(f"{where}: {exc}") from exc
    elif isinstance(spec, Mapping) and "source" in spec:
        layer = _build_saved_head(spec, where)
    elif isinstance(spec, Mapping) and "type" in spec:
        layer = _build_torch_layer(spec, width, where)
    elif isinstance(spec, Mapping) and "local" in spec:
        layer = module_from_spec(dict(spec))  # the user's own layer class; loads only with trust_local_code
    else:
        raise ConfigError(
            f"{where}: a layer is a torch.nn layer name or {{'type': NAME, ...args}}, an activation name, "
            f"a registered head {{'head': NAME, ...args}}, or a module; got {spec!r}"
        )
    if isinstance(layer, EncoderHead):
        if layer.reads_batch:
            raise ConfigError(f"{where}: a {type(layer).__name__} routes rows itself and cannot be nested; put it outermost")
        if layer.input_embedding_size != width:
            raise ConfigError(
                f"{where}: the head {type(layer).__name__} takes {layer.input_embedding_size} features but "
                f"gets {width}; build it with input_embedding_size={width}"
            )
    return layer


def output_width(layer: nn.Module, width: int, where: str) -> int:
    """The number of features ``layer`` makes of ``width`` (a dry run on two zero rows)."""
    if isinstance(layer, EncoderHead):
        return layer.output_size
    was_training = layer.training
    layer.eval()
    try:
        with torch.no_grad():
            out = layer(torch.zeros(2, width))
    except Exception as exc:  # noqa: BLE001 - any failure means the layer does not fit here
        raise ConfigError(f"{where}: {type(layer).__name__} cannot take inputs of {width} features: {exc}") from exc
    finally:
        layer.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{where}: {type(layer).__name__} must map (batch, features) to (batch, features), got {shape}")
    return int(out.shape[1])


def describe_layer(layer: nn.Module) -> dict[str, Any]:
    """The JSON description a saved model keeps of one layer."""
    if isinstance(layer, EncoderHead):
        entry = describe_component(get_registry(), "heads", layer, role="layer")
        entry.pop("role", None)
        return entry
    return module_to_spec(layer)
