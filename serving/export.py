"""Export the tensor part of a saved model to ONNX, checked against PyTorch with onnxruntime.

Two parts can be exported:

- ``"model"``: encoders that take tensors (their collate is simplug's default one, e.g.
  ``torch_module``) and the head, as one graph: one float input per encoder (``input`` for a
  single encoder, ``input_<key>`` for several), output ``embeddings``.
- ``"model"`` for a single encoder whose collate returns a dict of tensors (a tokenizer's
  ``input_ids``/``attention_mask``, say) and that offers ``export_example_objects()`` (a few
  objects, at least four, of different sizes): the graph takes those tensors, with dynamic batch
  and sequence axes, and is checked on the example objects.
- ``"head"``: the head alone, input ``encoder_embeddings`` of shape (batch, the encoders'
  total size). This is what is exportable for encoders that tokenize text or otherwise take
  objects that are not tensors: run the encoder as it is and the head in ONNX.

The batch axis is dynamic. The file is written beside the destination and moved into place
only after onnxruntime reproduces PyTorch's output on fresh random inputs at other batch sizes
than the one traced, within ``tolerance`` (max abs difference).
"""
from __future__ import annotations

import json
import os
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from simplug.errors import SimplugError
from simplug.serving.inputs import takes_tensors, tensor_input_shape
from torch import nn

ONNX_INSTALL = "pip install 'simplug[onnx]'  (that is: pip install onnx onnxruntime)"
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4
PARTS = ("model", "head")
TRACE_BATCH = 2
CHECK_BATCHES = (1, 7)
OUTPUT_NAME = "embeddings"
HEAD_INPUT_NAME = "encoder_embeddings"


class ExportError(SimplugError):
    """A model (or part of one) that cannot be exported, or an export that does not match PyTorch."""


@dataclass
class ExportReport:
    path: str
    part: str
    opset: int
    inputs: dict[str, list[Any]]
    output: list[Any]
    max_abs_diff: float
    checked_batch_sizes: tuple[int, ...]
    tolerance: float

    def summary(self) -> str:
        shapes = ", ".join(f"{name} {shape}" for name, shape in self.inputs.items())
        return (
            f"exported the {self.part} to {self.path} (ONNX opset {self.opset}); inputs: {shapes}; "
            f"output: {OUTPUT_NAME} {self.output}\n"
            f"onnxruntime vs PyTorch on batch sizes {', '.join(map(str, self.checked_batch_sizes))}: "
            f"max abs diff {self.max_abs_diff:.3g} (limit {self.tolerance:g})"
        )


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ExportError(f"exporting to ONNX needs onnx and onnxruntime ({exc.name} is missing): {ONNX_INSTALL}") from None
    return onnx, onnxruntime


class _TensorGraph(nn.Module):
    """The model as a function of plain tensors: one per encoder key, or, for a single encoder
    whose batch is a dict, one per name in that dict."""

    def __init__(
        self,
        model: nn.Module,
        keys: Sequence[str],
        batch_names: Sequence[str] | None = None,
        batch_constants: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.model = model
        self.keys = list(keys)
        self.batch_names = list(batch_names) if batch_names else None
        self.batch_constants = dict(batch_constants or {})

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        if self.batch_names is not None:
            return self.model({self.keys[0]: {**self.batch_constants, **dict(zip(self.batch_names, tensors))}})
        return self.model(dict(zip(self.keys, tensors)))


@dataclass
class _Plan:
    """What to trace and what to check it on."""

    graph: nn.Module
    names: list[str]
    trace: tuple[torch.Tensor, ...]
    checks: list[tuple[torch.Tensor, ...]]
    dynamic_axes: dict[str, dict[int, str]]
    input_shapes: dict[str, list[Any]]


def _component_names(model: Any) -> dict[str, str]:
    """Role -> registered name (from the manifest, where the model was loaded from one)."""
    names = {}
    for component in getattr(model, "manifest", {}).get("components", []):
        names[component.get("role", "")] = component.get("name") or component.get("class", "?")
    return names


def _encoder_input_shapes(model: Any, input_shapes: Mapping[str, Sequence[int]] | None) -> dict[str, tuple[int, ...]]:
    names = _component_names(model)
    given = dict(input_shapes or {})
    unknown = sorted(set(given) - set(model.encoders))
    if unknown:
        raise ExportError(f"input shapes given for {unknown}, but the model's encoders are {sorted(model.encoders)}")
    shapes = {}
    for key, encoder in model.encoders.items():
        label = f"encoder {key!r} ({names.get(f'encoder:{key}', type(encoder).__name__)})"
        if not takes_tensors(encoder):
            raise ExportError(
                f"{label} takes objects through its own collate (text, for example), not tensors, "
                "so it cannot be part of an ONNX graph. Exportable: encoders that take tensors "
                "(such as torch_module), a single encoder whose collate gives a dict of tensors and "
                "that has export_example_objects(), and the head; export the head alone with "
                f"part='head' (--part head), whose input is the encoders' embeddings of size "
                f"{model.head.input_embedding_size}"
            )
        shape = tuple(given[key]) if key in given else tensor_input_shape(encoder)
        if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ExportError(
                f"the shape of one object for {label} is not known from its config; give it, e.g. "
                f"input_shapes={{{key!r}: (channels, length)}} (--input-shape {key}=C,L)"
            )
        shapes[key] = shape
    return shapes


def _input_names(keys: Sequence[str]) -> list[str]:
    return ["input"] if len(keys) == 1 else [f"input_{key}" for key in keys]


def _random_inputs(shapes: Sequence[tuple[int, ...]], batch: int, generator: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(batch, *shape, generator=generator) for shape in shapes]


def _add_metadata(onnx: Any, path: str, model: Any, part: str) -> None:
    proto = onnx.load(path)
    manifest = getattr(model, "manifest", {})
    meta = {
        "simplug_part": part,
        "simplug_embedding_size": str(int(model.embedding_size)),
        "simplug_components": json.dumps(
            [{k: c.get(k) for k in ("role", "name", "distribution", "version", "config")} for c in manifest.get("components", [])]
        ),
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)


def _tensor_plan(model: Any, input_shapes: Mapping[str, Sequence[int]] | None, seed: int) -> _Plan:
    shapes = _encoder_input_shapes(model, input_shapes)
    keys = list(model.encoders)
    names = _input_names(keys)
    per_input = [shapes[k] for k in keys]
    generator = torch.Generator().manual_seed(seed)
    return _Plan(
        graph=_TensorGraph(model, keys),
        names=names,
        trace=tuple(_random_inputs(per_input, TRACE_BATCH, generator)),
        checks=[tuple(_random_inputs(per_input, batch, generator)) for batch in CHECK_BATCHES],
        dynamic_axes={name: {0: "batch"} for name in names},
        input_shapes={n: ["batch", *s] for n, s in zip(names, per_input)},
    )


def _dict_batch_plan(model: Any, input_shapes: Mapping[str, Sequence[int]] | None) -> _Plan:
    """A single encoder whose collate gives a dict of tensors (a tokenizer's output)."""
    (key, encoder), = model.encoders.items()
    if input_shapes:
        raise ExportError(f"encoder {key!r} makes its own tensors from example objects; drop the input shapes")
    objects = list(encoder.export_example_objects())
    if len(objects) < 4:
        raise ExportError(f"{type(encoder).__name__}.export_example_objects() must give at least 4 objects")
    collate = encoder.get_collate_fn()
    first = collate(objects[:2])
    if not isinstance(first, Mapping) or not any(isinstance(v, torch.Tensor) for v in first.values()):
        raise ExportError(f"the collate of encoder {key!r} must return a dict of tensors to be exported")
    names = [n for n, v in first.items() if isinstance(v, torch.Tensor)]
    # Entries that are not tensors (a tokenizer's "modality": "text", say) become constants of
    # the graph; they must not change from batch to batch.
    constants = {n: v for n, v in first.items() if not isinstance(v, torch.Tensor)}

    def tensors(batch_objects: list[Any]) -> tuple[torch.Tensor, ...]:
        batch = collate(batch_objects)
        if {n: v for n, v in batch.items() if n not in names} != constants:
            raise ExportError(f"the collate of encoder {key!r} gives entries that are not tensors and change between batches")
        return tuple(batch[n] for n in names)

    trace = tensors(objects[:2])
    dynamic = {n: {0: "batch", **{d: "sequence" if d == 1 else f"{n}_dim{d}" for d in range(1, t.dim())}} for n, t in zip(names, trace)}
    return _Plan(
        graph=_TensorGraph(model, [key], batch_names=names, batch_constants=constants),
        names=names,
        trace=trace,
        checks=[tensors(objects[2:]), tensors(objects[:1])],
        dynamic_axes=dynamic,
        input_shapes={n: [dynamic[n].get(d, int(t.shape[d])) for d in range(t.dim())] for n, t in zip(names, trace)},
    )


def _head_plan(model: Any, seed: int) -> _Plan:
    size = model.head.input_embedding_size
    generator = torch.Generator().manual_seed(seed)
    return _Plan(
        graph=model.head,
        names=[HEAD_INPUT_NAME],
        trace=tuple(_random_inputs([(size,)], TRACE_BATCH, generator)),
        checks=[tuple(_random_inputs([(size,)], batch, generator)) for batch in CHECK_BATCHES],
        dynamic_axes={HEAD_INPUT_NAME: {0: "batch"}},
        input_shapes={HEAD_INPUT_NAME: ["batch", size]},
    )


def export_onnx(
    model: Any,
    path: str,
    part: str = "model",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> ExportReport:
    """Export ``part`` of a loaded ``SimilarityModel`` to ``path`` and check it (see the module doc)."""
    onnx, ort = _require_onnx()
    if part not in PARTS:
        raise ExportError(f"part must be one of {PARTS}, got {part!r}")
    if getattr(model.head, "reads_batch", False):
        raise ExportError(
            f"the head {type(model.head).__name__} reads more of the batch than the embeddings (it "
            "routes each row), so it has no plain tensor graph to export; heads that map "
            "embeddings to embeddings are exportable"
        )
    if part == "head":
        if input_shapes:
            raise ExportError("input shapes are for encoders; the head's input size is known")
        plan = _head_plan(model, seed)
    else:
        single = next(iter(model.encoders.values())) if len(model.encoders) == 1 else None
        if single is not None and not takes_tensors(single) and hasattr(single, "export_example_objects"):
            plan = _dict_batch_plan(model, input_shapes)
        else:
            plan = _tensor_plan(model, input_shapes, seed)

    was_training = model.training
    # The exporter puts the traced module back in its own mode afterwards, and the mode
    # reaches every submodule: the wrapper must be in eval mode too, or the model's dropout
    # would be on for the check below.
    plan.graph.eval()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter works without onnxscript; torch marks it deprecated
            # and the tracer warns about the shape checks in forward, which hold for any batch.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                plan.graph,
                plan.trace,
                tmp,
                input_names=plan.names,
                output_names=[OUTPUT_NAME],
                dynamic_axes={**plan.dynamic_axes, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        onnx.checker.check_model(tmp)
        _add_metadata(onnx, tmp, model, part)
        session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        worst = 0.0
        for tensors in plan.checks:
            # Copies on both sides: some forwards (sentence-transformers') change their input
            # tensors in place, which would feed onnxruntime other inputs than PyTorch saw.
            feeds = {n: t.detach().cpu().numpy().copy() for n, t in zip(plan.names, tensors)}
            with torch.inference_mode():
                expected = plan.graph(*(t.clone() for t in tensors)).float().numpy()
            got = session.run([OUTPUT_NAME], feeds)[0]
            if got.shape != expected.shape:
                raise ExportError(f"the ONNX graph gives shape {got.shape}, PyTorch {expected.shape}")
            worst = max(worst, float(np.max(np.abs(got - expected))))
        if not worst <= tolerance:
            raise ExportError(
                f"the ONNX graph differs from PyTorch by up to {worst:.3g} (limit {tolerance:g}); "
                f"nothing was written to {path}. Try another opset (now {opset})"
            )
        os.replace(tmp, path)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - the tracer and exporter raise many kinds
        raise ExportError(f"ONNX export of the {part} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
        if os.path.exists(tmp):
            os.remove(tmp)
    return ExportReport(
        path=path,
        part=part,
        opset=opset,
        inputs=plan.input_shapes,
        output=["batch", int(model.head.output_size)],
        max_abs_diff=worst,
        checked_batch_sizes=tuple(int(t[0].shape[0]) for t in plan.checks),
        tolerance=tolerance,
    )


def parse_input_shapes(specs: Sequence[str], encoder_keys: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``["6"]`` or ``["default=1,20", "image=3,28,28"]`` -> ``{key: shape}`` (for the CLI)."""
    shapes = {}
    for spec in specs:
        key, sep, dims = spec.rpartition("=")
        if not sep:
            if len(encoder_keys) != 1:
                raise ExportError(f"--input-shape {spec!r}: the model has encoders {list(encoder_keys)}; write KEY=DIMS")
            key = encoder_keys[0]
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not shape or min(shape) < 1:
            raise ExportError(f"--input-shape {spec!r}: give positive sizes separated by commas, e.g. 3,28,28")
        shapes[key] = shape
    return shapes
