"""What every conformance check shares: the failure type, labels, and small probes."""
from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file
from simplug.testing import ConformanceError


def fail(message: str) -> None:
    raise ConformanceError(message)


def label_of(kind: str, component: Any, name: str | None) -> str:
    return f"{kind} {name or type(component).__name__!r}"


def shape_of(tensor: Any) -> tuple[int, ...]:
    return tuple(getattr(tensor, "shape", ()))


@contextlib.contextmanager
def step(label: str, what: str) -> Iterator[None]:
    """Turn an exception raised by the component into a failure that says where it happened."""
    try:
        yield
    except ConformanceError:
        raise
    except Exception as exc:
        raise ConformanceError(f"{label} raised {type(exc).__name__} in {what}: {exc}") from exc


# --------------------------------------------------------------------------- helpers
def generator(seed: int = 0) -> "torch.Generator":

    return torch.Generator().manual_seed(seed)


def check_config_json(label: str, config: Any) -> None:
    if not isinstance(config, dict):
        fail(f"{label}: get_config_dict() returned a {type(config).__name__}, not a dict")
    try:
        json.dumps(config)
    except (TypeError, ValueError) as exc:
        fail(
            f"{label}: get_config_dict() is not JSON-serialisable ({exc}); a saved model stores it "
            "in manifest.json, so record plain numbers, strings, lists and dicts"
        )


def rebuild(label: str, component: Any) -> Any:
    """``type(c)(**c.get_config_dict())``, with the config checked to survive the manifest."""
    with step(label, "get_config_dict()"):
        config = component.get_config_dict()
    check_config_json(label, config)
    config = json.loads(json.dumps(config))  # what a manifest gives back
    try:
        rebuilt = type(component)(**config)
    except Exception as exc:
        fail(
            f"{label}: get_config_dict() does not round-trip: {type(component).__name__}(**{config}) "
            f"raised {type(exc).__name__}: {exc}"
        )
    with step(label, "get_config_dict() of the rebuilt component"):
        again = rebuilt.get_config_dict()
    if json.loads(json.dumps(again)) != config:
        fail(
            f"{label}: get_config_dict() does not round-trip: built from {config} the component "
            f"reports {again}"
        )
    return rebuilt


def check_same_parameters(label: str, original: Any, rebuilt: Any) -> None:
    want = {k: tuple(v.shape) for k, v in original.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if want != got:
        diff = sorted(
            f"{k}: {want.get(k, 'absent')} vs {got.get(k, 'absent')}"
            for k in set(want) | set(got)
            if want.get(k) != got.get(k)
        )
        fail(
            f"{label}: get_config_dict() does not round-trip: rebuilt from its config it has other "
            f"weights ({'; '.join(diff)}); record every constructor argument in get_config_dict()"
        )


def save_and_load_state(label: str, module: Any, target: Any, directory: str) -> None:
    """Write ``module``'s weights with safetensors, as a saved model does, and load them into ``target``."""

    path = os.path.join(directory, "weights.safetensors")
    with step(label, "saving its weights with safetensors"):
        save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, path)
    with step(label, "loading its saved weights"):
        target.load_state_dict(load_file(path), strict=True)


def check_gradients(label: str, module: Any, inputs: "torch.Tensor | None", output: "torch.Tensor") -> None:

    if not output.requires_grad:
        fail(f"{label}: its output does not require grad (detached, or computed under no_grad); "
              "gradients cannot flow through it")
    weights = torch.randn(output.shape, generator=generator(1), dtype=output.dtype)
    (output * weights).sum().backward()
    if inputs is not None:
        if inputs.grad is None or not torch.any(inputs.grad != 0):
            fail(f"{label}: no gradient flows back to its input (is the output detached from it?)")
        if not torch.isfinite(inputs.grad).all():
            fail(f"{label}: the gradient to its input is not finite")
    for pname, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if param.grad is None:
            fail(f"{label}: parameter {pname!r} gets no gradient: it is not used in forward, or the "
                  "path from it to the output is detached")
        if not torch.isfinite(param.grad).all():
            fail(f"{label}: parameter {pname!r} gets a non-finite gradient")
        if not torch.any(param.grad != 0):
            fail(f"{label}: parameter {pname!r} gets an all-zero gradient, so training never changes it")


def pair_targets(n_pairs: int) -> dict[str, "torch.Tensor"]:

    pairs = torch.stack([torch.arange(n_pairs), torch.arange(n_pairs, 2 * n_pairs)], dim=1)
    labels = torch.tensor([1.0 if i % 3 else 0.0 for i in range(n_pairs)])
    labels[0] = 1.0
    subgroups = torch.tensor([i % 3 for i in range(n_pairs)] * 2)
    return {"pairs": pairs, "labels": labels, "subgroups": subgroups}


def group_targets(n: int) -> dict[str, "torch.Tensor"]:

    return {"groups": torch.arange(n) // 3}


