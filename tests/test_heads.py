"""Every built-in head: shapes, gradients, math against slow references, config round
trips, bit-identical save/load through the servable-model path, and argument errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import simplug
from conftest import run_cli, run_python
from simplug.errors import ConfigError, DataError
from simplug.components.head import ROUTES_KEY
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.registry import get_registry

IN = 12

# name -> list of constructor arguments (besides input_embedding_size) to try
CASES = {
    "empty": [{}],
    "skip_connection": [{}, {"n_layers": 3}],
    "gated": [{}],
    "blend": [{}, {"input_weight": 0.5, "assignment_weight": 0.25, "assignments": 5, "assignment_temperature": 0.5, "n_layers": 2}],
    "softmax_embeddings": [{"output_groups": 3, "output_size_per_group": 5}, {"output_groups": 1, "output_size_per_group": 4}],
    "stacked_projection": [
        {"output_sizes": [7]},
        {"output_sizes": [20, 9, 5], "activation_fn": "gelu"},
        {"output_sizes": (6, 3), "activation_fn": "leaky_relu"},
    ],
    "widening": [{}, {"expansion_factor": 1.5, "activation_fn": "tanh"}],
    "sequential": [
        {"layers": [{"type": "Linear", "out_features": 9}, "gelu", {"type": "LayerNorm"}, {"head": "gated"}]},
        {"layers": [{"head": "skip_connection", "n_layers": 2}, "Tanh", {"type": "Linear", "args": {"out_features": 5, "bias": False}}],
         "output_size": 5},
    ],
    "switch": [
        {"options": {"a": {"head": "skip_connection"}, "b": {"type": "Linear", "out_features": 12}}, "default": "a"},
        {"options": {"q": {"head": "stacked_projection", "output_sizes": [7]}, "d": {"type": "Linear", "out_features": 7},
                     "e": {"head": "sequential", "layers": ["relu", {"type": "Linear", "out_features": 7}]}},
         "route_key": "side"},
    ],
}
ALL_NAMES = sorted(CASES)
PARAMS = [pytest.param(name, args, id=f"{name}-{i}") for name in ALL_NAMES for i, args in enumerate(CASES[name])]


def head_class(name):
    return get_registry().resolve("heads", name)


def build_head(name, args, seed=0):
    torch.manual_seed(seed)
    head = head_class(name)(IN, **args)
    perturb(head, seed)
    return head


def routes_for(head, rows):
    """A batch that sends the rows of a switch head round-robin through every option."""
    if not head.reads_batch:
        return None
    return {ROUTES_KEY: torch.arange(rows) % len(head.names)}


def run(head, x):
    batch = routes_for(head, x.shape[0])
    return head(x) if batch is None else head(x, batch)


def perturb(module, seed=0):
    """Move every parameter away from its initial value (e.g. gates away from a constant)."""
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)


# ---------------------------------------------------------------- slow references
def linear_ref(x, weight, bias):
    """y[b, o] = sum_i x[b, i] * W[o, i] + bias[o], written out with elementwise ops."""
    return (x[:, None, :] * weight[None, :, :]).sum(dim=-1) + bias[None, :]


def activation_ref(name, x):
    if name == "relu":
        return torch.where(x > 0, x, torch.zeros_like(x))
    if name == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x / np.sqrt(2.0)))
    if name == "tanh":
        return (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x))
    if name == "sigmoid":
        return 1.0 / (1.0 + torch.exp(-x))
    if name == "leaky_relu":
        return torch.where(x >= 0, x, 0.01 * x)
    if name == "silu":
        return x / (1.0 + torch.exp(-x))
    if name == "elu":
        return torch.where(x > 0, x, torch.exp(x) - 1.0)
    if name == "identity":
        return x
    raise AssertionError(name)


def reference(name, head, x):
    sd = {k: v.detach().double() for k, v in head.state_dict().items()}
    x = x.double()
    if name == "empty":
        return x.clone()
    if name == "skip_connection":
        for i in range(head.n_layers):
            gate = 1.0 / (1.0 + torch.exp(-sd[f"gates.{i}"]))
            x = linear_ref(x, sd[f"fcs.{i}.weight"], sd[f"fcs.{i}.bias"]) * gate + x
        return x
    if name == "blend":
        def unit(v):
            return v / torch.sqrt((v * v).sum(dim=1, keepdim=True))
        projected = x
        for i in range(head.projection.n_layers):
            gate = 1.0 / (1.0 + torch.exp(-sd[f"projection.gates.{i}"]))
            projected = linear_ref(projected, sd[f"projection.fcs.{i}.weight"], sd[f"projection.fcs.{i}.bias"]) * gate + projected
        logits = linear_ref(x, sd["assign.weight"], sd["assign.bias"]) / head.assignment_temperature
        assignment = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
        projection_weight = 1.0 - head.input_weight - head.assignment_weight
        return torch.cat([np.sqrt(head.input_weight) * unit(x), np.sqrt(projection_weight) * unit(projected),
                          np.sqrt(head.assignment_weight) * unit(assignment)], dim=1)
    if name == "gated":
        g = sd["gates"]
        return x * activation_ref("tanh", g)
    if name == "softmax_embeddings":
        proj = linear_ref(x, sd["projection_layer.weight"], sd["projection_layer.bias"])
        size = head.output_size_per_group
        groups = []
        for gi in range(head.output_groups):
            chunk = proj[:, gi * size : (gi + 1) * size]
            e = torch.exp(chunk - chunk.max(dim=1, keepdim=True).values)
            groups.append(e / e.sum(dim=1, keepdim=True))
        return torch.cat(groups, dim=1)
    if name == "stacked_projection":
        weights = sorted((k for k in sd if k.endswith(".weight")), key=lambda k: int(k.split(".")[1]))
        assert len(weights) == len(head.output_sizes)
        for i, wkey in enumerate(weights):
            if i > 0:
                x = activation_ref(head.activation_fn, x)
            x = linear_ref(x, sd[wkey], sd[wkey[: -len("weight")] + "bias"])
        return x
    if name == "widening":
        hidden = int(IN * head.expansion_factor)
        assert sd["expand.weight"].shape == (hidden, IN) and sd["project.weight"].shape == (IN, hidden)
        h = activation_ref(head.activation_fn, linear_ref(x, sd["expand.weight"], sd["expand.bias"]))
        return linear_ref(h, sd["project.weight"], sd["project.bias"])
    if name == "sequential":
        for layer in head.layers:
            x = layer_reference(layer, x)
        return x
    if name == "switch":
        routes = routes_for(head, x.shape[0])[ROUTES_KEY]
        rows = [layer_reference(head.options[head.names[int(r)]], x[i : i + 1]) for i, r in enumerate(routes)]
        return torch.cat(rows)
    raise AssertionError(name)


def layer_reference(layer, x):
    """One layer of a sequential head or switch option, written out."""
    from simplug.components.head import EncoderHead

    if isinstance(layer, EncoderHead):
        return reference(get_registry().find_instance("heads", layer).name, layer, x)
    sd = {k: v.detach().double() for k, v in layer.state_dict().items()}
    if isinstance(layer, nn.Linear):
        bias = sd.get("bias", torch.zeros(layer.out_features, dtype=torch.float64))
        return linear_ref(x, sd["weight"], bias)
    if isinstance(layer, nn.LayerNorm):
        mean = x.mean(dim=1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
        return (x - mean) / torch.sqrt(var + layer.eps) * sd["weight"] + sd["bias"]
    for act in ("relu", "gelu", "tanh", "identity"):
        if type(layer).__name__.lower() == act:
            return activation_ref(act, x)
    raise AssertionError(type(layer))


# ---------------------------------------------------------------- tests
def test_every_head_is_covered():
    builtin = {r.name for r in get_registry().components("heads") if r.distribution == "simplug"}
    assert builtin == set(ALL_NAMES), "a built-in head has no test case: add it to CASES"
    for name in ALL_NAMES:
        assert head_class(name) is not None


@pytest.mark.parametrize("name,args", PARAMS)
def test_output_shape(name, args):
    head = build_head(name, args)
    out = run(head, torch.randn(5, IN))
    assert out.shape == (5, head.output_size)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name,args", PARAMS)
def test_gradients_reach_every_parameter(name, args):
    head = build_head(name, args)
    x = torch.randn(6, IN, requires_grad=True)
    out = run(head, x)
    # a non-symmetric objective: the sum of a softmax group is constant, so weight outputs
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in head.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("name,args", PARAMS)
def test_math_matches_a_slow_reference(name, args):
    head = build_head(name, args).eval()
    x = torch.randn(7, IN)
    with torch.no_grad():
        got = run(head, x).double()
    expected = reference(name, head, x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "sigmoid", "leaky_relu", "silu", "elu", "identity"])
@pytest.mark.parametrize("name", ["stacked_projection", "widening"])
def test_every_allowed_activation(name, activation):
    args = {"output_sizes": [9, 4]} if name == "stacked_projection" else {"expansion_factor": 2.0}
    head = build_head(name, {**args, "activation_fn": activation}).eval()
    assert head.get_config_dict()["activation_fn"] == activation
    x = torch.randn(4, IN) * 2
    with torch.no_grad():
        got = head(x).double()
    torch.testing.assert_close(got, reference(name, head, x), rtol=1e-5, atol=1e-5)


def test_blend_similarity_is_the_weighted_sum_of_its_three_cosines():
    head = build_head("blend", {"input_weight": 0.3, "assignment_weight": 0.45, "assignments": 6}).eval()
    a, b = torch.randn(5, IN, dtype=torch.float64), torch.randn(5, IN, dtype=torch.float64)
    head = head.double()
    with torch.no_grad():
        got = (head(a) * head(b)).sum(dim=1)
        assert torch.allclose(head(a).norm(dim=1), torch.ones(5, dtype=torch.float64))

        def cos(u, v):
            return (u * v).sum(dim=1) / (u.norm(dim=1) * v.norm(dim=1))

        def assign(x):
            return torch.softmax(head.assign(x), dim=1)

        expected = (0.3 * cos(a, b) + 0.25 * cos(head.projection(a), head.projection(b))
                    + 0.45 * cos(assign(a), assign(b)))
    torch.testing.assert_close(got, expected)


def test_initial_values():
    gated = head_class("gated")(IN)
    assert torch.equal(gated.gates.detach(), torch.full((IN,), 2.0))
    x = torch.randn(3, IN)
    torch.testing.assert_close(gated(x), x * np.tanh(2.0))
    soft = head_class("softmax_embeddings")(IN, output_groups=4, output_size_per_group=3)
    out = soft(torch.randn(5, IN))
    torch.testing.assert_close(out.reshape(5, 4, 3).sum(-1), torch.ones(5, 4))
    assert (out > 0).all()
    widening = head_class("widening")(IN)
    assert widening.expand.out_features == 4 * IN and widening.output_size == IN


def test_dropout_applies_only_in_training():
    for name, args in [("gated", {}), ("widening", {}), ("stacked_projection", {"output_sizes": [5]}), ("softmax_embeddings", {"output_groups": 2, "output_size_per_group": 3})]:
        head = head_class(name)(IN, dropout=0.5, **args)
        assert head.get_config_dict()["dropout"] == 0.5
        x = torch.randn(50, IN)
        head.eval()
        assert torch.equal(head(x), head(x))
        head.train()
        torch.manual_seed(0)
        a = head(x)
        torch.manual_seed(1)
        assert not torch.equal(a, head(x)), name


@pytest.mark.parametrize("name,args", PARAMS)
def test_config_round_trip(name, args):
    cls = head_class(name)
    head = build_head(name, {**args, "dropout": 0.25})
    cfg = head.get_config_dict()
    text = json.dumps(cfg)  # must be plain JSON
    rebuilt = cls(**json.loads(text))
    assert rebuilt.get_config_dict() == json.loads(text)
    assert rebuilt.output_size == head.output_size
    assert rebuilt.input_embedding_size == IN
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(head.state_dict())
    head.eval(), rebuilt.eval()
    x = torch.randn(3, IN)
    assert torch.equal(run(head, x), run(rebuilt, x))


def test_stacked_projection_config_is_a_list():
    head = head_class("stacked_projection")(IN, output_sizes=(8, 4))
    cfg = head.get_config_dict()
    assert cfg["output_sizes"] == [8, 4] and type(cfg["output_sizes"]) is list
    assert cfg["activation_fn"] == "relu"


@pytest.mark.parametrize("name,args", PARAMS)
def test_save_load_is_bit_identical(name, args, tmp_path):
    torch.manual_seed(0)
    encoder = TorchModuleEncoder(nn.Linear(8, 12), embedding_size=12)
    model = simplug.TrainableModel.from_config({"encoder": encoder, "head": {"name": name, **args}, "loss": "triplet"})
    head = model.model.head
    assert type(head) is head_class(name)
    perturb(head, seed=3)
    path = str(tmp_path / "model")
    model.save_servable(path)
    loaded = simplug.serving.SimilarityModel.load(path)
    assert type(loaded.head) is type(head)
    assert loaded.head.get_config_dict() == head.get_config_dict()
    inputs = [torch.randn(8) for _ in range(9)]
    if head.reads_batch:  # records name their switch option; with a default some need not
        inputs = [{"obj": v, head.route_key: head.names[i % len(head.names)]} if i % 3 or head.default is None else v
                  for i, v in enumerate(inputs)]
    expected = model.model.encode(inputs, batch_size=4)
    got = loaded.encode(inputs, batch_size=4)
    assert got.shape == (9, head.output_size)
    assert np.array_equal(got, expected)
    manifest_head = [c for c in loaded.manifest["components"] if c["role"] == "head"][0]
    assert manifest_head["name"] == name and manifest_head["source"] == "plugin"


BAD = [
    ("blend", {"input_weight": 0.7, "assignment_weight": 0.4}, r"at most 1.*0.7 \+ 0.4 = 1.1"),
    ("blend", {"input_weight": -0.1}, r"input_weight must be a number in \[0, 1\]"),
    ("blend", {"assignment_weight": "0.3"}, r"assignment_weight must be a number"),
    ("blend", {"assignments": 0}, r"assignments must be a positive int"),
    ("blend", {"assignment_temperature": 0}, r"assignment_temperature must be a positive number"),
    ("stacked_projection", {"output_sizes": [8], "activation_fn": "swishy"}, r"activation_fn.*'swishy'.*relu.*gelu.*identity"),
    ("stacked_projection", {"output_sizes": [8], "activation_fn": "torch.nn.ReLU"}, r"activation_fn.*relu"),
    ("stacked_projection", {"output_sizes": [8], "activation_fn": nn.ReLU}, r"activation_fn.*name"),
    ("stacked_projection", {"output_sizes": []}, r"output_sizes.*non-empty"),
    ("stacked_projection", {"output_sizes": [8, 0]}, r"output_sizes\[1\].*0"),
    ("stacked_projection", {"output_sizes": [8, -3]}, r"output_sizes\[1\]"),
    ("stacked_projection", {"output_sizes": [8, 2.5]}, r"output_sizes\[1\]"),
    ("stacked_projection", {"output_sizes": [True]}, r"output_sizes\[0\]"),
    ("stacked_projection", {"output_sizes": 8}, r"output_sizes.*list"),
    ("stacked_projection", {"output_sizes": "8"}, r"output_sizes.*list"),
    ("widening", {"activation_fn": "swishy"}, r"activation_fn.*'swishy'.*leaky_relu"),
    ("widening", {"expansion_factor": 0}, r"expansion_factor.*positive"),
    ("widening", {"expansion_factor": -2.0}, r"expansion_factor.*positive"),
    ("widening", {"expansion_factor": float("nan")}, r"expansion_factor"),
    ("widening", {"expansion_factor": "4"}, r"expansion_factor"),
    ("widening", {"expansion_factor": 0.01}, r"expansion_factor.*hidden layer of 0"),
    ("softmax_embeddings", {"output_groups": 0, "output_size_per_group": 4}, r"output_groups must be a positive int.*0"),
    ("softmax_embeddings", {"output_groups": 2, "output_size_per_group": -1}, r"output_size_per_group must be a positive int"),
    ("softmax_embeddings", {"output_groups": 2.0, "output_size_per_group": 3}, r"output_groups"),
    ("gated", {"dropout": 1.5}, r"dropout"),
    ("sequential", {"layers": []}, r"layers must be a non-empty list"),
    ("sequential", {"layers": "Linear"}, r"layers must be a non-empty list"),
    ("sequential", {"layers": ["Sequential"]}, r"layers\[0\].*'Sequential' is not a torch.nn layer"),
    ("sequential", {"layers": ["os.system"]}, r"'os.system' is not a torch.nn layer"),
    ("sequential", {"layers": [{"type": "Linear", "out_feature": 3}]}, r"layers\[0\].*Linear.*failed"),
    ("sequential", {"layers": [{"type": "Linear", "out_features": 4}], "output_size": 5}, r"end with 4 features.*output_size=5"),
    ("sequential", {"layers": ["relu", {"head": "gated", "input_embedding_size": 3}]}, r"layers\[1\].*takes 3 features but gets 12"),
    ("sequential", {"layers": [{"type": "Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 1}]}, r"cannot take inputs of 12"),
    ("sequential", {"layers": [{"type": "Flatten", "start_dim": 0}]}, r"must map \(batch, features\)"),
    ("sequential", {"layers": [{"head": "switch", "options": {"a": "Identity"}}]}, r"cannot be nested"),
    ("sequential", {"layers": [{"head": "no_such_head"}]}, r"no_such_head"),
    ("sequential", {"layers": [42]}, r"a layer is a torch.nn layer name"),
    ("switch", {"options": {}}, r"options must be a non-empty table"),
    ("switch", {"options": {"a": {"type": "Linear", "out_features": 3}, "b": "Identity"}}, r"same size.*'a': 3.*'b': 12"),
    ("switch", {"options": {"a": "Identity"}, "default": "z"}, r"default 'z' is not one of the options \['a'\]"),
    ("switch", {"options": {"a": "Identity"}, "route_key": "obj"}, r"route_key"),
]


@pytest.mark.parametrize("name,args,pattern", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_arguments_are_explained(name, args, pattern):
    with pytest.raises(ValueError, match=pattern):
        head_class(name)(IN, **args)


def test_bad_arguments_through_a_config_are_config_errors():
    encoder = TorchModuleEncoder(nn.Linear(8, 12), embedding_size=12)
    for head, pattern in [
        ({"name": "stacked_projection", "output_sizes": [4], "activation_fn": "swishy"}, r"swishy.*relu"),
        ({"name": "stacked_projection", "output_sizes": []}, r"output_sizes"),
        ({"name": "softmax_embeddings", "output_groups": 0, "output_size_per_group": 2}, r"output_groups"),
        ({"name": "widening", "activation_fn": "swishy"}, r"swishy"),
    ]:
        with pytest.raises((ValueError, ConfigError), match=pattern):
            simplug.TrainableModel.from_config({"encoder": encoder, "head": head, "loss": "triplet"})


def test_activation_names_are_resolved_from_an_allow_list():
    from simplug.plugins.heads import activations

    assert set(activations.ACTIVATIONS) == {"relu", "gelu", "tanh", "sigmoid", "leaky_relu", "silu", "elu", "identity"}
    head = head_class("widening")(IN, activation_fn="GELU")
    assert head.get_config_dict()["activation_fn"] == "gelu" and isinstance(head.activation, nn.GELU)
    for sneaky in ["__import__('os')", "os.system", "ReLU()", ""]:
        with pytest.raises(ValueError, match="activation_fn"):
            head_class("widening")(IN, activation_fn=sneaky)


def test_cli_lists_every_head():
    result = run_cli("list", "--kind", "heads", "--json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    names = {r["name"] for r in records}
    assert set(ALL_NAMES) <= names
    assert all(r["status"] == "ok" for r in records if r["name"] in ALL_NAMES)


# ---------------------------------------------------------------- switch routing
def switch_head(**kwargs):
    torch.manual_seed(0)
    head = head_class("switch")(IN, options={"query": {"head": "skip_connection"}, "doc": "Identity"}, **kwargs)
    perturb(head)
    return head


def test_switch_routes_each_record_by_its_key():
    head = switch_head(default="doc").eval()
    encoder = TorchModuleEncoder(nn.Identity(), embedding_size=IN)
    model = simplug.serving.SimilarityModel(encoder, head)
    vectors = [torch.randn(IN) for _ in range(5)]
    records = [{"obj": vectors[0], "route": "query"}, vectors[1], {"obj": vectors[2], "route": "doc"},
               {"obj": vectors[3], "route": "query"}, vectors[4]]
    out = model.encode(records, batch_size=5, to_numpy=False)
    query = head.options["query"]
    with torch.no_grad():
        for i, v in enumerate(vectors):
            expected = query(v[None]) if i in (0, 3) else v[None]
            torch.testing.assert_close(out[i : i + 1], expected, rtol=1e-6, atol=1e-6)
            if i not in (0, 3):
                assert torch.equal(out[i : i + 1], expected), i  # the identity option is exact
    # batches of one give the same rows (up to the rounding of a different matmul shape)
    torch.testing.assert_close(model.encode(records, batch_size=1, to_numpy=False), out, rtol=1e-6, atol=1e-6)


def test_switch_bad_records_are_explained():
    head = switch_head()
    with pytest.raises(DataError, match=r"record 1 does not say which switch option.*'route': one of \['doc', 'query'\]"):
        head.prepare_records([{"obj": 1, "route": "doc"}, 5])
    with pytest.raises(DataError, match=r"record 0 has route='answer', which is not one of the options"):
        head.prepare_records([{"obj": 1, "route": "answer"}])
    with pytest.raises(DataError, match=r"record 0 names a route but has no 'obj'"):
        head.prepare_records([{"text": 1, "route": "doc"}])
    with pytest.raises(DataError, match="got no routes"):
        head(torch.randn(3, IN))
    # routes may also be given by name in a hand-made batch
    x = torch.randn(2, IN)
    assert torch.equal(head(x, {ROUTES_KEY: ["doc", "query"]}), head(x, {ROUTES_KEY: torch.tensor([0, 1])}))


def test_sequential_and_switch_train_from_a_config(tmp_path):
    from data import pair_points

    pairs = [simplug.SimilarityPairSample({"obj": s.obj_a, "route": "query"}, {"obj": s.obj_b, "route": "doc"}, s.score, s.subgroup)
             for s in pair_points(n_pairs=32)]
    encoder = TorchModuleEncoder(nn.Linear(12, 8), embedding_size=8)
    config = {
        "encoder": encoder,
        "head": {"name": "switch", "options": {
            "query": {"head": "sequential", "layers": [{"type": "Linear", "out_features": 8}, "gelu", {"head": "gated"}]},
            "doc": {"head": "gated"}}},
        "loss": "multiple_negatives_ranking",
        "optimizer": {"name": "adam", "lr": 0.05},
    }
    model = simplug.TrainableModel.from_config(config)
    before = {k: v.clone() for k, v in model.model.head.state_dict().items()}
    simplug.Quaterion.fit(model, train_dataloader=simplug.PairsSimilarityDataLoader(pairs, batch_size=16),
                          max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                          enable_checkpointing=False)
    after = model.model.head.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("options.query.") for k in changed) and any(k.startswith("options.doc.") for k in changed)
    path = str(tmp_path / "switch")
    model.save_servable(path)
    records = [p.obj_a for p in pairs[:5]] + [p.obj_b for p in pairs[:5]]
    code = f"""
import sys, torch, numpy as np
from simplug.serving import SimilarityModel
m = SimilarityModel.load({path!r})
torch.manual_seed(1)
v = [torch.randn(12) for _ in range(4)]
out = m.encode([{{"obj": v[0], "route": "query"}}, {{"obj": v[1], "route": "doc"}}], batch_size=2)
print("SHAPE", out.shape)
print("UNRELATED", [n for n in sys.modules if n.startswith(("simplug.plugins.losses", "simplug.plugins.metrics", "pytorch_lightning"))])
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "SHAPE (2, 8)" in result.stdout and "UNRELATED []" in result.stdout
    loaded = simplug.serving.SimilarityModel.load(path)
    assert np.array_equal(loaded.encode(records, batch_size=4), model.model.encode(records, batch_size=4))


def test_sequential_saves_no_pickle_and_names_only_torch_layers(tmp_path):
    encoder = TorchModuleEncoder(nn.Linear(8, 12), embedding_size=12)
    model = simplug.TrainableModel.from_config({"encoder": encoder, "loss": "triplet", "head": {
        "name": "sequential", "layers": [{"type": "Linear", "out_features": 6}, "ReLU"]}})
    path = tmp_path / "seq"
    model.save_servable(str(path))
    manifest = json.loads((path / "manifest.json").read_text())
    head = [c for c in manifest["components"] if c["role"] == "head"][0]
    assert head["config"]["layers"] == [
        {"type": "Linear", "args": {"in_features": 12, "out_features": 6, "bias": True}},
        {"type": "ReLU", "args": {"inplace": False}},
    ]
    assert not list(path.rglob("*.pt")) and not list(path.rglob("*.pkl")) and not list(path.rglob("*.bin"))
    # a manifest edited to name something outside torch.nn is refused, not imported
    head["config"]["layers"][1] = {"type": "os.system", "args": {}}
    with pytest.raises(ConfigError, match="'os.system' is not a torch.nn layer"):
        head_class("sequential")(**head["config"])


def test_nested_heads_are_named_in_requirements_and_checked_on_load(tmp_path):
    from simplug.errors import MissingPluginError
    from simplug.model.manifest import requirements

    encoder = TorchModuleEncoder(nn.Linear(8, 12), embedding_size=12)
    model = simplug.TrainableModel.from_config({"encoder": encoder, "loss": "triplet", "head": {
        "name": "switch", "options": {"a": {"head": "gated"}, "b": {"head": "sequential", "layers": [{"head": "gated"}]}},
        "default": "a"}})
    path = tmp_path / "nested"
    model.save_servable(str(path))
    manifest = json.loads((path / "manifest.json").read_text())
    head = [c for c in manifest["components"] if c["role"] == "head"][0]
    nested = head["config"]["options"]["b"]["config"]["layers"][0]
    assert nested["name"] == "gated" and nested["distribution"] == "simplug"
    nested.update(distribution="simplug-fancy-heads", version="2.1.0", plugin="fancy")
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert "simplug-fancy-heads==2.1.0" in requirements(manifest)
    with pytest.raises(MissingPluginError, match=r"pip install 'simplug-fancy-heads==2\.1\.0'"):
        simplug.serving.SimilarityModel.load(str(path))
