"""Test helpers for plugin authors; also a pytest plugin (entry point ``pytest11``).

Once simplug is installed, every pytest run in that environment gets the fixture
``isolated_registry``. Import the rest::

    from simplug.testing import check_head, registered_plugin

    def test_my_head_conforms():
        check_head(MyHead(input_embedding_size=12, output_size=8), name="my_head")

Each ``check_*`` runs the contract the rest of simplug relies on for that kind and raises an
``AssertionError`` (``ConformanceError``) whose message names the component and the fault.

pytest imports this module at start-up in every project of the environment, so it must stay
cheap: torch and the component base classes are imported inside the functions.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from simplug.registry import PluginInfo, Registry

__all__ = [
    "ConformanceError",
    "isolated_registry",
    "registry_context",
    "registered_plugin",
    "check_component",
    "check_head",
    "check_loss",
    "check_encoder",
    "check_distance",
    "check_metric",
    "check_cache_backend",
]


class ConformanceError(AssertionError):
    """A component breaks the contract of its kind; the message says how."""


def _fail(message: str) -> None:
    raise ConformanceError(message)


def _label(kind: str, component: Any, name: str | None) -> str:
    return f"{kind} {name or type(component).__name__!r}"


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(getattr(tensor, "shape", ()))


@contextlib.contextmanager
def _step(label: str, what: str) -> Iterator[None]:
    """Turn an exception raised by the component into a failure that says where it happened."""
    try:
        yield
    except ConformanceError:
        raise
    except Exception as exc:
        raise ConformanceError(f"{label} raised {type(exc).__name__} in {what}: {exc}") from exc


# --------------------------------------------------------------------------- registries
@contextlib.contextmanager
def registry_context(builtins: bool = True) -> Iterator["Registry"]:
    """A fresh registry that does not discover installed plugins, made the process-wide one
    for the duration (so names resolve through it), and the previous one restored after.

    ``builtins=True`` loads simplug's own components (losses need the built-in distances).
    """
    from simplug.registry import registry as registry_module

    registry = registry_module.Registry(autoload=False, strict=True)
    if builtins:
        for ep in registry_module.Registry._entry_points():
            dist = ep.dist.metadata["Name"] if ep.dist is not None else ""
            if registry_module.normalize_distribution(dist) == registry_module.BUILTIN_DISTRIBUTION:
                registry.load_entry_point(dist, ep.name)
    previous = registry_module._default
    registry_module.reset_registry(registry)
    try:
        yield registry
    finally:
        registry_module.reset_registry(previous)


@contextlib.contextmanager
def registered_plugin(
    plugin: Any,
    registry: "Registry | None" = None,
    name: str | None = None,
    distribution: str | None = None,
    version: str | None = None,
) -> Iterator["PluginInfo"]:
    """Register a hooks module (or its dotted name) for the duration of the block.

    ``registry`` defaults to the process-wide one. The distribution and version default to
    those of the installed distribution that provides the module, so records look as they will
    in a saved model; a module that is not installed is recorded as local code.
    """
    import importlib

    from simplug.registry import LOCAL_DISTRIBUTION, get_registry

    if isinstance(plugin, str):
        plugin = importlib.import_module(plugin)
    registry = registry if registry is not None else get_registry()
    module_name = getattr(plugin, "__name__", type(plugin).__name__)
    if distribution is None:
        distribution, found_version = _distribution_of(module_name)
        version = found_version if version is None else version
    info = registry.add_plugin(
        plugin,
        name=name or module_name,
        distribution=distribution or LOCAL_DISTRIBUTION,
        version=version or "",
    )
    if info.status != "ok":
        registry.remove_plugin(info)
        _fail(f"plugin {info.name!r} failed to register: {info.error}")
    try:
        yield info
    finally:
        registry.remove_plugin(info)


_packages: "dict[str, list[str]] | None" = None
_looked_up: set[str] = set()


def _distribution_of(module_name: str) -> tuple[str | None, str | None]:
    try:
        import importlib_metadata as metadata
    except ImportError:  # pragma: no cover
        from importlib import metadata  # type: ignore[no-redef]
    global _packages
    top = module_name.split(".")[0]
    # the scan is slow (~1 s): once, and again for a name it did not know (installed since)
    if _packages is None or (top not in _packages and top not in _looked_up):
        _packages = metadata.packages_distributions()
        _looked_up.add(top)
    names = _packages.get(top) or []
    if not names:
        return None, None
    try:
        return names[0], metadata.version(names[0])
    except metadata.PackageNotFoundError:  # pragma: no cover
        return names[0], None


try:  # the fixture exists only under pytest; the checks work without it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def isolated_registry() -> Iterator["Registry"]:
        """A registry with simplug's built-ins and no other installed plugin, used by
        ``get_registry()`` during the test. Add yours with ``registered_plugin``."""
        with registry_context(builtins=True) as registry:
            yield registry


# --------------------------------------------------------------------------- helpers
def _generator(seed: int = 0) -> "torch.Generator":
    import torch

    return torch.Generator().manual_seed(seed)


def _check_config_json(label: str, config: Any) -> None:
    if not isinstance(config, dict):
        _fail(f"{label}: get_config_dict() returned a {type(config).__name__}, not a dict")
    try:
        json.dumps(config)
    except (TypeError, ValueError) as exc:
        _fail(
            f"{label}: get_config_dict() is not JSON-serialisable ({exc}); a saved model stores it "
            "in manifest.json, so record plain numbers, strings, lists and dicts"
        )


def _rebuild(label: str, component: Any) -> Any:
    """``type(c)(**c.get_config_dict())``, with the config checked to survive the manifest."""
    with _step(label, "get_config_dict()"):
        config = component.get_config_dict()
    _check_config_json(label, config)
    config = json.loads(json.dumps(config))  # what a manifest gives back
    try:
        rebuilt = type(component)(**config)
    except Exception as exc:
        _fail(
            f"{label}: get_config_dict() does not round-trip: {type(component).__name__}(**{config}) "
            f"raised {type(exc).__name__}: {exc}"
        )
    with _step(label, "get_config_dict() of the rebuilt component"):
        again = rebuilt.get_config_dict()
    if json.loads(json.dumps(again)) != config:
        _fail(
            f"{label}: get_config_dict() does not round-trip: built from {config} the component "
            f"reports {again}"
        )
    return rebuilt


def _check_same_parameters(label: str, original: Any, rebuilt: Any) -> None:
    want = {k: tuple(v.shape) for k, v in original.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if want != got:
        diff = sorted(
            f"{k}: {want.get(k, 'absent')} vs {got.get(k, 'absent')}"
            for k in set(want) | set(got)
            if want.get(k) != got.get(k)
        )
        _fail(
            f"{label}: get_config_dict() does not round-trip: rebuilt from its config it has other "
            f"weights ({'; '.join(diff)}); record every constructor argument in get_config_dict()"
        )


def _save_and_load_state(label: str, module: Any, target: Any, directory: str) -> None:
    """Write ``module``'s weights with safetensors, as a saved model does, and load them into ``target``."""
    from safetensors.torch import load_file, save_file

    path = os.path.join(directory, "weights.safetensors")
    with _step(label, "saving its weights with safetensors"):
        save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, path)
    with _step(label, "loading its saved weights"):
        target.load_state_dict(load_file(path), strict=True)


def _check_gradients(label: str, module: Any, inputs: "torch.Tensor | None", output: "torch.Tensor") -> None:
    import torch

    if not output.requires_grad:
        _fail(f"{label}: its output does not require grad (detached, or computed under no_grad); "
              "gradients cannot flow through it")
    weights = torch.randn(output.shape, generator=_generator(1), dtype=output.dtype)
    (output * weights).sum().backward()
    if inputs is not None:
        if inputs.grad is None or not torch.any(inputs.grad != 0):
            _fail(f"{label}: no gradient flows back to its input (is the output detached from it?)")
        if not torch.isfinite(inputs.grad).all():
            _fail(f"{label}: the gradient to its input is not finite")
    for pname, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if param.grad is None:
            _fail(f"{label}: parameter {pname!r} gets no gradient: it is not used in forward, or the "
                  "path from it to the output is detached")
        if not torch.isfinite(param.grad).all():
            _fail(f"{label}: parameter {pname!r} gets a non-finite gradient")
        if not torch.any(param.grad != 0):
            _fail(f"{label}: parameter {pname!r} gets an all-zero gradient, so training never changes it")


# --------------------------------------------------------------------------- heads
def check_head(head: Any, name: str | None = None, batch_size: int = 8) -> None:
    """Output shape, ``get_config_dict`` round trip, save/load bit-identical, gradients flow."""
    import torch

    from simplug.components.head import EncoderHead

    label = _label("head", head, name)
    if not isinstance(head, EncoderHead):
        _fail(f"{label} is a {type(head).__name__}, not a simplug.components.head.EncoderHead subclass")
    size = head.input_embedding_size
    with _step(label, "output_size"):
        output_size = head.output_size
    if not isinstance(output_size, int) or output_size <= 0:
        _fail(f"{label}: output_size is {output_size!r}, not a positive int")
    inputs = torch.randn(batch_size, size, generator=_generator())
    head.eval()
    with _step(label, f"forward on a {(batch_size, size)} batch"), torch.no_grad():
        output = head(inputs)
    if not isinstance(output, torch.Tensor):
        _fail(f"{label}: forward returned a {type(output).__name__}, not a tensor")
    if _shape(output) != (batch_size, output_size):
        _fail(f"{label} output has shape {_shape(output)} but output_size is {output_size} "
              f"(input batch {(batch_size, size)}, so the output must be {(batch_size, output_size)})")
    if not torch.isfinite(output).all():
        _fail(f"{label}: output has NaN or inf values for a normal random input")
    with torch.no_grad():
        if not torch.equal(head(inputs), output):
            _fail(f"{label}: two forward passes in eval mode give different outputs; eval must be deterministic")

    rebuilt = _rebuild(label, head)
    _check_same_parameters(label, head, rebuilt)

    with tempfile.TemporaryDirectory() as tmp:
        _save_and_load_state(label, head, rebuilt, tmp)
    rebuilt.eval()
    with _step(label, "forward after save/load"), torch.no_grad():
        reloaded = rebuilt(inputs)
    if _shape(reloaded) != _shape(output) or not torch.equal(reloaded, output):
        delta = (reloaded - output).abs().max().item() if _shape(reloaded) == _shape(output) else "n/a"
        _fail(f"{label}: save/load is not bit-identical: rebuilt from get_config_dict() with its saved "
              f"weights, the output differs (max abs difference {delta}); keep all state in parameters "
              "or persistent buffers and every constructor argument in get_config_dict()")

    head.train()
    grad_inputs = inputs.clone().requires_grad_(True)
    head.zero_grad(set_to_none=True)
    with _step(label, "forward in train mode"):
        output = head(grad_inputs)
    with _step(label, "backward"):
        _check_gradients(label, head, grad_inputs, output)
    head.zero_grad(set_to_none=True)
    head.eval()


# --------------------------------------------------------------------------- losses
def _pair_targets(n_pairs: int) -> dict[str, "torch.Tensor"]:
    import torch

    pairs = torch.stack([torch.arange(n_pairs), torch.arange(n_pairs, 2 * n_pairs)], dim=1)
    labels = torch.tensor([1.0 if i % 3 else 0.0 for i in range(n_pairs)])
    labels[0] = 1.0
    subgroups = torch.tensor([i % 3 for i in range(n_pairs)] * 2)
    return {"pairs": pairs, "labels": labels, "subgroups": subgroups}


def _group_targets(n: int) -> dict[str, "torch.Tensor"]:
    import torch

    return {"groups": torch.arange(n) // 3}


def check_loss(loss: Any, name: str | None = None, embedding_size: int = 8, batch_size: int = 12) -> None:
    """Finite scalar, gradients flow, the pair/group contract, ``get_config_dict`` round trip."""
    import torch

    from simplug.components.loss import SimilarityLoss

    label = _label("loss", loss, name)
    if not isinstance(loss, SimilarityLoss):
        _fail(f"{label} is a {type(loss).__name__}, not a simplug.components.loss.SimilarityLoss "
              "(subclass PairwiseLoss or GroupLoss)")
    kind = loss.target_kind
    if kind == "pairs":
        targets = _pair_targets(batch_size // 2)
        call = "loss(embeddings, pairs=..., labels=..., subgroups=...)"
        what = "pair"
    elif kind == "groups":
        targets = _group_targets(batch_size)
        call = "loss(embeddings, groups=...)"
        what = "group"
    else:
        _fail(f"{label}: target_kind is {kind!r}; a loss is a pair loss ('pairs', subclass PairwiseLoss) "
              "or a group loss ('groups', subclass GroupLoss)")
    embeddings = torch.randn(batch_size, embedding_size, generator=_generator())

    def evaluate(module: Any, emb: torch.Tensor, probe: str) -> torch.Tensor:
        try:
            value = module(emb, **targets)
        except TypeError as exc:
            _fail(f"{label} is a {what} loss (target_kind={kind!r}) but cannot be called with {what} "
                  f"targets as the trainer does, {call}: {exc}")
        except Exception as exc:
            _fail(f"{label} raised {type(exc).__name__} on {probe}: {exc}")
        if not isinstance(value, torch.Tensor):
            _fail(f"{label} returned a {type(value).__name__} on {probe}, not a tensor")
        if value.dim() != 0:
            _fail(f"{label} returned a tensor of shape {_shape(value)} on {probe}; a loss must return "
                  "a scalar (reduce with mean or sum)")
        if not torch.isfinite(value):
            _fail(f"{label} returned a non-finite value ({value.item()}) on {probe}")
        return value

    value = evaluate(loss, embeddings, f"{batch_size} random embeddings of size {embedding_size}")
    grad_embeddings = embeddings.clone().requires_grad_(True)
    value = evaluate(loss, grad_embeddings, "random embeddings")
    if not value.requires_grad:
        _fail(f"{label}: the loss value does not require grad (detached from the embeddings); "
              "training would never change the model")
    with _step(label, "backward"):
        value.backward()
    if grad_embeddings.grad is None or not torch.any(grad_embeddings.grad != 0):
        _fail(f"{label}: no gradient flows back to the embeddings")
    if not torch.isfinite(grad_embeddings.grad).all():
        _fail(f"{label}: the gradient to the embeddings is not finite")

    # two embeddings that coincide (a duplicate in the batch) must not give NaN gradients
    same = embeddings.clone()
    a, b = (targets["pairs"][0].tolist() if kind == "pairs" else (0, 1))
    same[b] = same[a]
    same.requires_grad_(True)
    value = evaluate(loss, same, "a batch where two embeddings coincide")
    with _step(label, "backward with two coinciding embeddings"):
        value.backward()
    if same.grad is None or not torch.isfinite(same.grad).all():
        _fail(f"{label}: the gradient is not finite when two embeddings coincide (a sqrt or norm at "
              "zero distance?)")

    rebuilt = _rebuild(label, loss)
    # learned weights (class centres, ArcFace's class matrix) are state, not config: the
    # rebuilt loss starts from fresh random ones, so it gets the original's before comparing
    _check_same_parameters(label, loss, rebuilt)
    with _step(label, "load_state_dict() of its own state_dict() into the rebuilt loss"):
        rebuilt.load_state_dict(loss.state_dict(), strict=True)
    with torch.no_grad():
        first = evaluate(loss, embeddings, "random embeddings")
        again = evaluate(rebuilt, embeddings, "random embeddings, rebuilt from get_config_dict()")
    if not torch.allclose(first, again, rtol=1e-5, atol=1e-6):
        _fail(f"{label}: get_config_dict() does not round-trip: rebuilt from it the loss gives "
              f"{again.item()} instead of {first.item()} on the same batch")


# --------------------------------------------------------------------------- encoders
def check_encoder(encoder: Any, inputs: Sequence[Any], name: str | None = None) -> None:
    """Collate + forward shape equals ``embedding_size``, deterministic eval, save/load round trip.

    ``inputs`` are a few raw objects of the kind the encoder reads (texts, tensors, ...).
    """
    import torch

    from simplug.components.encoder import Encoder

    label = _label("encoder", encoder, name)
    if not isinstance(encoder, Encoder):
        _fail(f"{label} is a {type(encoder).__name__}, not a simplug.components.encoder.Encoder subclass")
    inputs = list(inputs)
    if len(inputs) < 2:
        raise ValueError("check_encoder needs at least two sample inputs")
    with _step(label, "embedding_size / trainable"):
        size, trainable = encoder.embedding_size, encoder.trainable
    if not isinstance(size, int) or size <= 0:
        _fail(f"{label}: embedding_size is {size!r}, not a positive int")
    if not isinstance(trainable, bool):
        _fail(f"{label}: trainable is {trainable!r}, not a bool")
    with _step(label, "get_collate_fn()"):
        collate = encoder.get_collate_fn()
    with _step(label, f"its collate function on {len(inputs)} inputs"):
        batch = collate(inputs)
    encoder.eval()
    with _step(label, "forward on a collated batch"), torch.no_grad():
        output = encoder(batch)
        second = encoder(collate(inputs))
    if not isinstance(output, torch.Tensor):
        _fail(f"{label}: forward returned a {type(output).__name__}, not a tensor")
    if _shape(output) != (len(inputs), size):
        _fail(f"{label} output has shape {_shape(output)} for {len(inputs)} inputs but embedding_size is "
              f"{size} (expected {(len(inputs), size)})")
    if not torch.isfinite(output).all():
        _fail(f"{label}: output has NaN or inf values")
    if not torch.equal(output, second):
        _fail(f"{label}: two forward passes in eval mode give different embeddings; frozen encoders are "
              "cached on that assumption")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "encoder")
        with _step(label, f"save({path!r})"):
            encoder.save(path)
        with _step(label, f"{type(encoder).__name__}.load({path!r})"):
            loaded = type(encoder).load(path)
    if not isinstance(loaded, type(encoder)):
        _fail(f"{label}: load() returned a {type(loaded).__name__}, not a {type(encoder).__name__}")
    if (loaded.embedding_size, loaded.trainable) != (size, trainable):
        _fail(f"{label}: after save/load embedding_size, trainable are {(loaded.embedding_size, loaded.trainable)} "
              f"instead of {(size, trainable)}")
    loaded.eval()
    with _step(label, "forward after save/load"), torch.no_grad():
        reloaded = loaded(loaded.get_collate_fn()(inputs))
    if _shape(reloaded) != _shape(output) or not torch.equal(reloaded, output):
        _fail(f"{label}: save/load is not bit-identical: the loaded encoder gives other embeddings for "
              "the same inputs")

    if trainable:
        encoder.train()
        encoder.zero_grad(set_to_none=True)
        with _step(label, "forward in train mode"):
            output = encoder(collate(inputs))
        with _step(label, "backward"):
            _check_gradients(label, encoder, None, output)
        encoder.zero_grad(set_to_none=True)
        encoder.eval()
    else:
        encoder.disable_gradients_if_required()
        trainable_params = [n for n, p in encoder.named_parameters() if p.requires_grad]
        if trainable_params:
            _fail(f"{label} says trainable=False but parameters {trainable_params} still require grad")


# --------------------------------------------------------------------------- distances
def check_distance(distance: Any, name: str | None = None, dim: int = 6) -> None:
    """The matrix and row forms agree, similarity falls as distance grows, finite gradients."""
    import torch

    from simplug.components.distance import Distance

    label = _label("distance", distance, name)
    if not isinstance(distance, Distance):
        _fail(f"{label} is a {type(distance).__name__}, not a simplug.components.distance.Distance subclass")
    x = torch.randn(5, dim, generator=_generator())
    y = torch.randn(4, dim, generator=_generator(2))
    forms = {}
    for form, call in (
        ("distance_matrix(x, y)", lambda: distance.distance_matrix(x, y)),
        ("similarity_matrix(x, y)", lambda: distance.similarity_matrix(x, y)),
        ("distance_matrix(x)", lambda: distance.distance_matrix(x)),
        ("similarity_matrix(x)", lambda: distance.similarity_matrix(x)),
    ):
        with _step(label, form):
            forms[form] = call()
    for form, expected in (("distance_matrix(x, y)", (5, 4)), ("similarity_matrix(x, y)", (5, 4)),
                           ("distance_matrix(x)", (5, 5)), ("similarity_matrix(x)", (5, 5))):
        if _shape(forms[form]) != expected:
            _fail(f"{label}: {form} has shape {_shape(forms[form])} for x {tuple(x.shape)}, y {tuple(y.shape)}; "
                  f"expected {expected}")
    rows_x = x.repeat_interleave(4, dim=0)
    rows_y = y.repeat(5, 1)
    for row_form, matrix_form, call in (
        ("distance", "distance_matrix(x, y)", distance.distance),
        ("similarity", "similarity_matrix(x, y)", distance.similarity),
    ):
        with _step(label, f"{row_form}(x_rows, y_rows)"):
            rows = call(rows_x, rows_y)
        if _shape(rows) != (20,):
            _fail(f"{label}: {row_form}(a, b) on (20, {dim}) inputs has shape {_shape(rows)}, expected (20,)")
        matrix = forms[matrix_form].reshape(-1)
        if not torch.allclose(rows, matrix, rtol=1e-4, atol=1e-5):
            worst = int((rows - matrix).abs().argmax())
            _fail(f"{label}: the matrix and row forms disagree: {matrix_form}[{worst // 4}, {worst % 4}] is "
                  f"{matrix[worst].item():.6g} but {row_form}(x[{worst // 4}], y[{worst % 4}]) is "
                  f"{rows[worst].item():.6g}")
    if not torch.allclose(forms["distance_matrix(x)"], distance.distance_matrix(x, x), rtol=1e-4, atol=1e-5):
        _fail(f"{label}: distance_matrix(x) differs from distance_matrix(x, x)")
    d, s = forms["distance_matrix(x, y)"], forms["similarity_matrix(x, y)"]
    closer = d.unsqueeze(2) < d.unsqueeze(1) - 1e-5  # [i, j, k]: j is nearer to x[i] than k
    if (closer & ~(s.unsqueeze(2) > s.unsqueeze(1))).any():
        _fail(f"{label}: similarity does not fall as distance grows: for some row a nearer candidate "
              "(smaller distance) has no larger similarity")
    dup = torch.cat([x, x[:2]]).requires_grad_(True)
    with _step(label, "backward through distance_matrix with duplicate rows"):
        distance.distance_matrix(dup).sum().backward()
    if dup.grad is None or not torch.isfinite(dup.grad).all():
        _fail(f"{label}: distance_matrix gives non-finite (or no) gradients when two rows coincide; "
              "losses backpropagate through it")


# --------------------------------------------------------------------------- metrics
def check_metric(metric: Any, name: str | None = None, embedding_size: int = 8) -> None:
    """A finite scalar for the targets it takes, independent of batch order; config round trip."""
    import torch

    from simplug.components.metric import Metric, PairScoreMetric

    label = _label("metric", metric, name)
    if not isinstance(metric, Metric):
        _fail(f"{label} is a {type(metric).__name__}, not a simplug.components.metric.Metric subclass")
    if not isinstance(metric.name, str) or not metric.name:
        _fail(f"{label}: name is {metric.name!r}; it names the logged value, so give a non-empty string")
    kinds = {"pairs": ["pairs"], "groups": ["groups"], "any": ["pairs", "groups"]}.get(metric.target_kind)
    if kinds is None:
        _fail(f"{label}: target_kind is {metric.target_kind!r}; use 'pairs', 'groups' or 'any'")
    rebuilt = _rebuild(label, metric)
    ranks = not isinstance(metric, PairScoreMetric)
    n = 12
    embeddings = torch.randn(n, embedding_size, generator=_generator())
    order = torch.randperm(n, generator=_generator(3))
    inverse = torch.argsort(order)
    for kind in kinds:
        targets = _pair_targets(n // 2) if kind == "pairs" else _group_targets(n)
        with _step(label, f"compute(embeddings, {kind} targets)"):
            value = metric.compute(embeddings, targets)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            _fail(f"{label}: compute() returned {_shape(value) if isinstance(value, torch.Tensor) else type(value).__name__} "
                  f"for {kind} targets; a metric returns a scalar tensor")
        if not torch.isfinite(value):
            _fail(f"{label}: compute() returned {value.item()} for {kind} targets where every query has a relevant object")
        if kind == "groups":
            shuffled = {"groups": targets["groups"][order]}
        else:
            shuffled = {"pairs": inverse[targets["pairs"]], "labels": targets["labels"],
                        "subgroups": targets["subgroups"][order]}
        with _step(label, f"compute on the same {kind} batch in another order"):
            permuted = metric.compute(embeddings[order], shuffled)
        if not torch.allclose(value, permuted, rtol=1e-5, atol=1e-6):
            _fail(f"{label}: the value depends on the order of the batch ({value.item()} vs {permuted.item()} "
                  f"for the same {kind} batch shuffled)")
        if ranks:
            _check_blockwise(label, metric, embeddings, targets, value)
        with _step(label, "compute after a get_config_dict() round trip"):
            again = rebuilt.compute(embeddings, targets)
        if not torch.allclose(value, again, rtol=1e-5, atol=1e-6):
            _fail(f"{label}: get_config_dict() does not round-trip: rebuilt from it the metric gives "
                  f"{again.item()} instead of {value.item()}")


def _check_blockwise(label: str, metric: Any, embeddings: "torch.Tensor", targets: Any, value: "torch.Tensor") -> None:
    """A data set is evaluated a few queries at a time (``simplug.evaluation.evaluator.Evaluator``):
    ``per_query(block)`` must give one value per query of the block, each depending on its
    own query only, so the mean over blocks is what ``compute`` gives for the whole batch."""
    import torch

    from simplug.evaluation.evaluator import Evaluator
    from simplug.components.ranking import QueryBlock, Relevance

    relevance = Relevance(targets, embeddings.shape[0])
    queries = relevance.queries[:3]
    groups = relevance.groups  # for metrics that vote by group (knn_accuracy)
    block = QueryBlock(metric.distance.distance_matrix(embeddings[queries], embeddings), relevance.block(queries), queries,
                       query_groups=None if groups is None else groups[queries], candidate_groups=groups)
    with _step(label, f"per_query(block) on a QueryBlock of {len(queries)} queries"):
        block.prepare(metric.depth(block))
        per_query = metric.per_query(block)
    if not isinstance(per_query, torch.Tensor) or _shape(per_query) != (len(queries),):
        got = _shape(per_query) if isinstance(per_query, torch.Tensor) else type(per_query).__name__
        _fail(f"{label}: per_query(block) returned {got} for a block of {len(queries)} queries; it must "
              f"return one value per query, shape {(len(queries),)}")
    with _step(label, "evaluation block by block (Evaluator with block_size=5)"):
        blockwise = Evaluator({"metric": metric}, block_size=5).compute(embeddings, targets)["metric"]
    if not torch.allclose(value.double(), torch.tensor(blockwise, dtype=torch.float64), rtol=1e-5, atol=1e-6):
        _fail(f"{label}: evaluated a few queries at a time it gives {blockwise} instead of {value.item()} "
              "for the whole batch; per_query(block) must compute each query's value from its own row "
              "of the block only (use block.ranked_relevance, block.n_relevant, ... rather than "
              "statistics over the block)")


# --------------------------------------------------------------------------- cache backends
def check_cache_backend(backend_class: Callable[..., Any], name: str | None = None) -> None:
    """The table contract that ``simplug.training.cache.fast_path`` relies on.

    ``backend_class`` is the registered class, or any callable taking the same arguments
    (``functools.partial(MyCache, option=...)``): the cache builds a backend as
    ``backend_class(num_rows, embedding_size, dtype, device)``, adding ``path=`` (the cache
    file) when the class is ``file_backed`` and the cache is persisted. Checked: a new table
    is zeros of the right shape and dtype (several processes each fill a share and the shares
    are summed); ``write(positions, embeddings)`` then ``rows(indices)`` and ``storage`` give
    the rows written at those positions, in float32 and float16; ``payload_bytes``; a wrongly
    shaped write is refused; ``save_file`` writes the cache file format (raw row-major rows,
    ``payload_bytes`` long), which passes ``verify_cache_file`` and which ``load_file`` of a new
    instance reads back; a file-backed backend persists in place and ``close()`` keeps the
    cache file it was given.
    """
    import torch

    from simplug.components.cache_backend import CacheBackend
    from simplug.training.cache.files import expected_meta, file_sha256, verify_cache_file, write_meta

    label = f"cache backend {name or getattr(backend_class, '__name__', type(backend_class).__name__)!r}"
    num_rows, size = 6, 5
    with _step(label, f"the constructor ({num_rows}, {size}, torch.float32, 'cpu')"):
        first = backend_class(num_rows, size, torch.float32, "cpu")
    if not isinstance(first, CacheBackend):
        _fail(f"{label} is a {type(first).__name__}, not a simplug.components.cache_backend.CacheBackend subclass")
    file_backed = bool(first.file_backed)
    _check_new_table(label, first, num_rows, size, torch.float32)
    with _step(label, "close()"):
        first.close()

    values = torch.randn(num_rows, size, generator=_generator())
    order = torch.tensor([4, 0, 2, 5, 1, 3])  # the fill writes in the encoder's order, in batches
    with tempfile.TemporaryDirectory(prefix="simplug-check-cache-") as tmp:
        for dtype in (torch.float32, torch.float16):
            path = os.path.join(tmp, f"{str(dtype)[6:]}.rows")
            # a persisted file-backed cache is built in the cache file itself
            args = {"path": path} if file_backed else {}
            with _step(label, f"the constructor ({num_rows}, {size}, {dtype}, 'cpu'{', path=...' if args else ''})"):
                backend = backend_class(num_rows, size, dtype, "cpu", **args)
            _check_new_table(label, backend, num_rows, size, dtype)
            expected = values.to(dtype)
            for batch in order.split(4):
                with _step(label, f"write(positions={batch.tolist()}, embeddings of shape {(len(batch), size)})"):
                    backend.write(batch, values[batch])
            _check_rows(label, backend, expected, f"after write() at positions {order.tolist()} in {dtype}")
            _check_refuses_bad_write(label, backend, size)

            with _step(label, f"save_file({path!r})"):
                backend.save_file(path)
            _check_cache_file(label, path, expected, dtype)
            # the cache records the file's SHA-256 after save_file and verifies it before reuse
            meta = expected_meta("check", num_rows, size, dtype)
            saved_sha256 = file_sha256(path)
            write_meta(path + ".json", {**meta, "sha256": saved_sha256})
            reason = verify_cache_file(path, path + ".json", meta)
            if reason is not None:
                _fail(f"{label}: the file save_file wrote fails verify_cache_file ({reason})")
            with _step(label, "close() after save_file"):
                backend.close()
            if not os.path.exists(path) or file_sha256(path) != saved_sha256:
                _fail(f"{label}: close() removed or changed the cache file {path}; a backend may delete only "
                      "temporary files it created itself, never the cache file it was given as path")

            with _step(label, f"the constructor for reuse ({num_rows}, {size}, {dtype}, 'cpu'{', path=...' if args else ''})"):
                reopened = backend_class(num_rows, size, dtype, "cpu", **args)
            with _step(label, f"load_file({path!r})"):
                reopened.load_file(path)
            _check_rows(label, reopened, expected, "after load_file() of a saved cache file")
            with _step(label, "close()"):
                reopened.close()

        # a file-backed backend is also given cache files other than its own (a copy elsewhere)
        source = os.path.join(tmp, "float32.rows")
        with _step(label, f"load_file of another cache file into a new ({num_rows}, {size}, torch.float32, 'cpu')"):
            other = backend_class(num_rows, size, torch.float32, "cpu")
            other.load_file(source)
        _check_rows(label, other, values, "after load_file() of a cache file made by another instance")
        with _step(label, "close()"):
            other.close()

    with _step(label, f"the constructor (0, {size}, torch.float32, 'cpu') and rows() of no indices"):
        empty = backend_class(0, size, torch.float32, "cpu")
        got = empty.rows(torch.zeros(0, dtype=torch.long))
        empty.close()
    if _shape(got) != (0, size):
        _fail(f"{label}: rows() of no indices on an empty table has shape {_shape(got)}, expected {(0, size)}")


def _check_new_table(label: str, backend: Any, num_rows: int, size: int, dtype: "torch.dtype") -> None:
    import torch

    if len(backend) != num_rows or backend.num_rows != num_rows or backend.embedding_size != size:
        _fail(f"{label}: built with num_rows={num_rows}, embedding_size={size} it reports len()={len(backend)}, "
              f"num_rows={backend.num_rows}, embedding_size={backend.embedding_size}")
    if backend.dtype != dtype:
        _fail(f"{label}: built with dtype {dtype} its dtype attribute is {backend.dtype}")
    storage = getattr(backend, "storage", None)
    if not isinstance(storage, torch.Tensor) or _shape(storage) != (num_rows, size) or storage.dtype != dtype:
        got = f"{_shape(storage)} {storage.dtype}" if isinstance(storage, torch.Tensor) else type(storage).__name__
        _fail(f"{label}: storage is {got}; allocate() must return the table, a {(num_rows, size)} tensor of {dtype} "
              "(training reads rows from storage directly)")
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if backend.payload_bytes != num_rows * size * itemsize:
        _fail(f"{label}: payload_bytes is {backend.payload_bytes} for {num_rows} rows of {size} {dtype} values; "
              f"expected {num_rows * size * itemsize}")
    if storage.numel() and storage.detach().cpu().float().abs().sum().item() != 0:
        _fail(f"{label}: a new table is not all zeros; allocate() must zero it (under several processes each "
              "fills a share of the rows and the tables are summed)")


def _check_rows(label: str, backend: Any, expected: "torch.Tensor", when: str) -> None:
    import torch

    indices = torch.tensor([3, 0, 5, 3, 1])  # out of order and repeated, as a shuffled batch
    with _step(label, f"rows({indices.tolist()}) {when}"):
        got = backend.rows(indices.to(backend.storage.device))
    if _shape(got) != (len(indices), expected.shape[1]) or got.dtype != expected.dtype:
        _fail(f"{label}: rows({indices.tolist()}) {when} is {_shape(got)} {getattr(got, 'dtype', '')}; expected "
              f"{(len(indices), expected.shape[1])} {expected.dtype} (the storage dtype; training widens it)")
    if not torch.equal(got.cpu(), expected[indices]):
        _fail(f"{label}: rows({indices.tolist()}) {when} does not return the rows written at those positions")
    if not torch.equal(backend.storage.detach().cpu(), expected):
        _fail(f"{label}: storage {when} does not hold row i at index i; training gathers from storage directly")


def _check_refuses_bad_write(label: str, backend: Any, size: int) -> None:
    import torch

    before = backend.storage.detach().cpu().clone()
    try:
        backend.write(torch.tensor([0, 1]), torch.ones(2, size + 1))
    except ValueError:
        pass
    except Exception as exc:
        _fail(f"{label}: write() of embeddings of the wrong width raised {type(exc).__name__}, not ValueError: {exc}")
    else:
        _fail(f"{label}: write() accepted embeddings of width {size + 1} for a table of embedding_size {size}; "
              "it must raise ValueError")
    if not torch.equal(backend.storage.detach().cpu(), before):
        _fail(f"{label}: a refused write() changed the table")


def _check_cache_file(label: str, path: str, expected: "torch.Tensor", dtype: "torch.dtype") -> None:
    import torch

    want = expected.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
    if not os.path.exists(path):
        _fail(f"{label}: save_file({path!r}) wrote no file")
    with open(path, "rb") as fh:
        data = fh.read()
    if len(data) != len(want):
        _fail(f"{label}: save_file wrote {len(data)} bytes for {expected.shape[0]} rows of {expected.shape[1]} "
              f"{dtype} values; the cache file format is the raw rows, row-major, payload_bytes "
              f"({len(want)}) long, with no header")
    if data != want:
        _fail(f"{label}: the file save_file wrote does not hold the rows as raw row-major {dtype} values "
              "(the cache file format: row i at byte i * embedding_size * itemsize)")


# --------------------------------------------------------------------------- dispatch
def check_component(kind: str, component: Any, name: str | None = None, **kwargs: Any) -> None:
    """Run the check for ``kind`` (``heads``, ``loss``, ...); see the ``check_*`` functions."""
    from simplug.registry import normalize_kind

    checks: dict[str, Callable[..., None]] = {
        "heads": check_head,
        "losses": check_loss,
        "encoders": check_encoder,
        "distances": check_distance,
        "metrics": check_metric,
        "cache_backends": check_cache_backend,
    }
    checks[normalize_kind(kind)](component, name=name, **kwargs)

