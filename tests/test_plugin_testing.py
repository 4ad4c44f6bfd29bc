"""simplug.testing: the built-ins pass every conformance check; faulty components fail with a
message that names the fault; the registry fixture and context manager."""
from __future__ import annotations

import inspect
import types

import pytest
import torch
from torch import nn

from simplug import hookimpl
from simplug.components.head import EncoderHead
from simplug.components.loss import GroupLoss, PairwiseLoss
from simplug.registry import Registry, get_registry
from simplug.testing import (
    ConformanceError,
    check_cache_backend,
    check_component,
    check_distance,
    check_encoder,
    check_head,
    check_loss,
    check_metric,
    registered_plugin,
)

# Constructor arguments for built-ins that need more than the conventional ones below.
# A new built-in with a required argument fails test_every_builtin_passes_its_check until its
# arguments are added here.
BUILTIN_ARGS = {
    ("heads", "softmax_embeddings"): {"output_groups": 2, "output_size_per_group": 3},
    ("heads", "stacked_projection"): {"output_sizes": [6, 5]},
    ("heads", "sequential"): {"layers": [{"type": "Linear", "out_features": 6}, "gelu", {"type": "LayerNorm"},
                                         {"head": "skip_connection"}]},
    # check_head calls the head without routes, so every row takes the default option (an
    # option with weights that no row takes would get no gradient)
    ("heads", "switch"): {"options": {"query": {"head": "skip_connection"}, "doc": "Identity"},
                          "default": "query"},
    ("losses", "pml"): {"loss": "ContrastiveLoss", "miner": "MultiSimilarityMiner"},
}
# (check_loss and check_metric use embeddings of size 8 and 4 groups)
CONVENTIONAL_ARGS = {"input_embedding_size": 8, "embedding_size": 8, "num_groups": 4, "num_classes": 4}
DIRECTORY_ARGS = ("directory", "path", "save_dir", "cache_dir")


def _encoder_cases(cls):
    inputs = [torch.randn(8, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    return [
        (cls(nn.Linear(8, 5), embedding_size=5), inputs),
        (cls(nn.Sequential(nn.Linear(8, 5), nn.Tanh()), input_size=8, trainable=True), inputs),
    ]


def _text_encoder_cases(cls):
    pytest.importorskip("sentence_transformers")
    return [(cls(), ["What is AI?", "Tell me a joke.", "a"])]


ENCODER_CASES = {"torch_module": _encoder_cases, "sentence_transformer": _text_encoder_cases}


def _builtins() -> list[tuple[str, str]]:
    registry = Registry()
    return [(r.kind, r.name) for r in registry.components() if r.distribution == "simplug"]


def _construct(kind: str, name: str, cls: type, tmp_path) -> object:
    args = dict(BUILTIN_ARGS.get((kind, name), {}))
    for pname, param in inspect.signature(cls).parameters.items():
        if param.default is not param.empty or pname in args or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if pname in CONVENTIONAL_ARGS:
            args[pname] = CONVENTIONAL_ARGS[pname]
        elif pname in DIRECTORY_ARGS:
            args[pname] = str(tmp_path / f"{name}-store")
        else:
            pytest.fail(f"built-in {kind} {name!r} needs the argument {pname!r}: add it to BUILTIN_ARGS in {__file__}")
    return cls(**args)


@pytest.mark.parametrize("kind,name", _builtins(), ids=lambda v: v)
def test_every_builtin_passes_its_check(kind, name, tmp_path):
    cls = get_registry().resolve(kind, name)
    if kind == "encoders":
        if name not in ENCODER_CASES:
            pytest.fail(f"built-in encoder {name!r} has no sample inputs: add it to ENCODER_CASES in {__file__}")
        for encoder, inputs in ENCODER_CASES[name](cls):
            check_encoder(encoder, inputs, name=name)
    elif kind == "cache_backends":
        check_cache_backend(cls, name=name)  # built by the cache with (num_rows, embedding_size, dtype, device)
    elif kind == "indexes":
        from simplug.testing import check_index

        check_index(cls, name=name)  # opened as (location, collection=...)
    else:
        check_component(kind, _construct(kind, name, cls, tmp_path), name=name)


def test_every_kind_has_a_builtin_under_test():
    assert {kind for kind, _ in _builtins()} == {"encoders", "heads", "losses", "distances", "metrics", "cache_backends",
                                                "indexes"}


# --------------------------------------------------------------------------- faulty heads
class LinearHead(EncoderHead):
    def __init__(self, input_embedding_size: int, output_size: int = 8, dropout: float = 0.0):
        super().__init__(input_embedding_size, dropout=dropout)
        self._output_size = output_size
        self.fc = nn.Linear(input_embedding_size, output_size)

    @property
    def output_size(self) -> int:
        return self._output_size

    def transform(self, x):
        return self.fc(x)

    def get_config_dict(self):
        return {**super().get_config_dict(), "output_size": self._output_size}


class WrongSizeHead(LinearHead):
    def transform(self, x):
        return self.fc(x)[:, :-1]  # drops a column, output_size still says 8


class DetachedHead(LinearHead):
    def transform(self, x):
        return x @ self.fc.weight.detach().T + self.fc.bias  # the weight never learns


class ForgetfulConfigHead(LinearHead):
    def get_config_dict(self):
        return EncoderHead.get_config_dict(self)  # output_size is not recorded


class UnsavedStateHead(LinearHead):
    def __init__(self, input_embedding_size: int, output_size: int = 8, dropout: float = 0.0):
        super().__init__(input_embedding_size, output_size, dropout)
        # a random projection kept outside the state dict: lost on save
        self.register_buffer("mix", torch.randn(output_size, output_size), persistent=False)

    def transform(self, x):
        return self.fc(x) @ self.mix


class NotJsonHead(LinearHead):
    def get_config_dict(self):
        return {**super().get_config_dict(), "dtype": torch.float32}


@pytest.mark.parametrize(
    "head,fault",
    [
        (WrongSizeHead(6), r"head 'wrong' output has shape \(8, 7\) but output_size is 8"),
        (DetachedHead(6), r"head 'wrong': parameter 'fc.weight' gets no gradient"),
        (ForgetfulConfigHead(6, output_size=5), r"get_config_dict\(\) does not round-trip.*fc.weight: \(5, 6\) vs \(8, 6\)"),
        (UnsavedStateHead(6), r"save/load is not bit-identical"),
        (NotJsonHead(6), r"not JSON-serialisable"),
    ],
    ids=["output-size", "no-gradient", "config-round-trip", "save-load", "config-json"],
)
def test_a_faulty_head_fails_naming_the_fault(head, fault):
    with pytest.raises(AssertionError, match=fault):
        check_head(head, name="wrong")


def test_a_correct_head_passes_and_the_failure_is_a_conformance_error():
    check_head(LinearHead(6), name="fine")
    with pytest.raises(ConformanceError):
        check_head(WrongSizeHead(6))


# --------------------------------------------------------------------------- faulty losses
class DistanceToPartnerLoss(PairwiseLoss):
    def forward(self, embeddings, pairs, labels, subgroups):
        return self.distance_metric.distance(embeddings[pairs[:, 0]], embeddings[pairs[:, 1]]).mean()


class LogOfNegativeLoss(DistanceToPartnerLoss):
    def forward(self, embeddings, pairs, labels, subgroups):
        return torch.log(super().forward(embeddings, pairs, labels, subgroups) - 10.0)  # nan


class PerPairLoss(DistanceToPartnerLoss):
    def forward(self, embeddings, pairs, labels, subgroups):
        return self.distance_metric.distance(embeddings[pairs[:, 0]], embeddings[pairs[:, 1]])  # not reduced


class DetachedLoss(DistanceToPartnerLoss):
    def forward(self, embeddings, pairs, labels, subgroups):
        return super().forward(embeddings.detach(), pairs, labels, subgroups)


class GroupLossTakingPairs(GroupLoss):
    def forward(self, embeddings, pairs, labels):  # declares groups, reads pairs
        return embeddings[pairs[:, 0]].sum()


class SqrtAtZeroLoss(PairwiseLoss):
    def forward(self, embeddings, pairs, labels, subgroups):
        diff = embeddings[pairs[:, 0]] - embeddings[pairs[:, 1]]
        return diff.pow(2).sum(-1).sqrt().mean()  # infinite slope when a pair coincides


@pytest.mark.parametrize(
    "loss,fault",
    [
        (LogOfNegativeLoss(), r"loss 'wrong' returned a non-finite value \(nan\)"),
        (PerPairLoss(), r"loss 'wrong' returned a tensor of shape \(6,\).*must return a scalar"),
        (DetachedLoss(), r"loss 'wrong': the loss value does not require grad"),
        (GroupLossTakingPairs(), r"loss 'wrong' is a group loss \(target_kind='groups'\) but cannot be called with group targets"),
        (SqrtAtZeroLoss(), r"gradient is not finite when two embeddings coincide"),
    ],
    ids=["non-finite", "not-scalar", "no-gradient", "group-contract", "nan-gradient"],
)
def test_a_faulty_loss_fails_naming_the_fault(loss, fault):
    with pytest.raises(AssertionError, match=fault):
        check_loss(loss, name="wrong")


def test_a_pair_loss_with_a_forgotten_config_argument_fails():
    class MarginLoss(DistanceToPartnerLoss):
        def __init__(self, margin: float = 1.0, distance_metric_name: str = "cosine"):
            super().__init__(distance_metric_name)
            self.margin = margin

        def forward(self, embeddings, pairs, labels, subgroups):
            return torch.relu(self.margin - super().forward(embeddings, pairs, labels, subgroups))

    check_loss(DistanceToPartnerLoss(), name="fine")
    with pytest.raises(AssertionError, match=r"loss 'margin': get_config_dict\(\) does not round-trip"):
        check_loss(MarginLoss(margin=3.0), name="margin")


def test_learned_loss_weights_are_state_but_a_forgotten_argument_still_fails():
    from simplug.plugins.losses.arcface import ArcFaceLoss

    class ForgetsTheScale(ArcFaceLoss):
        def get_config_dict(self):
            return {k: v for k, v in super().get_config_dict().items() if k != "scale"}

    class ForgetsTheGroups(ArcFaceLoss):
        def get_config_dict(self):
            return {**super().get_config_dict(), "num_groups": 4}

    check_loss(ArcFaceLoss(embedding_size=8, num_groups=4), name="fine")  # fresh random weights when rebuilt
    with pytest.raises(AssertionError, match=r"loss 'wrong': get_config_dict\(\) does not round-trip: rebuilt from it the loss gives"):
        check_loss(ForgetsTheScale(embedding_size=8, num_groups=4, scale=16.0), name="wrong")
    with pytest.raises(AssertionError, match=r"loss 'wrong': get_config_dict\(\) does not round-trip: rebuilt from its config it has other weights"):
        check_loss(ForgetsTheGroups(embedding_size=8, num_groups=5), name="wrong")


# --------------------------------------------------------------------------- other kinds
def test_a_faulty_encoder_fails_naming_the_fault():
    from simplug.plugins.encoders.torch_module import TorchModuleEncoder

    class Noisy(TorchModuleEncoder):
        def forward(self, batch):
            return super().forward(batch) + torch.randn(batch.shape[0], self.embedding_size)

    inputs = [torch.randn(4) for _ in range(3)]
    with pytest.raises(AssertionError, match=r"encoder 'wrong' output has shape \(3, 5\) for 3 inputs but embedding_size is 6"):
        check_encoder(TorchModuleEncoder(nn.Linear(4, 5), embedding_size=6), inputs, name="wrong")
    with pytest.raises(AssertionError, match=r"encoder 'wrong': two forward passes in eval mode give different embeddings"):
        check_encoder(Noisy(nn.Linear(4, 5), embedding_size=5), inputs, name="wrong")


def test_a_distance_whose_forms_disagree_fails():
    from simplug.plugins.distances.euclidean import Euclidean

    class SquaredMatrix(Euclidean):
        def distance_matrix(self, x, y=None):
            return super().distance_matrix(x, y) ** 2

    with pytest.raises(AssertionError, match=r"distance 'wrong': the matrix and row forms disagree: distance_matrix\(x, y\)\[\d, \d\]"):
        check_distance(SquaredMatrix(), name="wrong")


def test_a_metric_that_depends_on_batch_order_fails():
    from simplug.components.metric import Metric

    class UnsortedPrecision(Metric):
        def per_query(self, block):
            # the first two candidates in batch order, not the two nearest (block.ranked_relevance(2))
            return block.relevance[:, :2].float().mean(dim=1)

    class SortedPrecision(Metric):
        def per_query(self, block):
            return block.ranked_relevance(2).float().mean(dim=1)

    check_metric(SortedPrecision(), name="fine")

    with pytest.raises(AssertionError, match=r"metric 'wrong': the value depends on the order of the batch"):
        check_metric(UnsortedPrecision(), name="wrong")


def test_a_metric_that_is_not_per_query_fails():
    from simplug.components.metric import Metric

    class BlockNormalisedRank(Metric):
        def per_query(self, block):
            # each query's rank relative to the worst in its block: depends on which queries share the block
            rank = block.first_relevant_rank().double()
            return rank / rank.max()

    class OneValuePerBlock(Metric):
        def per_query(self, block):
            return block.ranked_relevance(1).double().mean()

    with pytest.raises(AssertionError, match=r"metric 'wrong': evaluated a few queries at a time it gives .* instead of"):
        check_metric(BlockNormalisedRank(), name="wrong")
    # the ranking engine refuses it already in compute
    with pytest.raises(AssertionError, match=r"metric 'wrong'.*per_query\(block\) returned \(\) for a block of \d+ queries"):
        check_metric(OneValuePerBlock(), name="wrong")


# --------------------------------------------------------------------------- faulty cache backends
def _memory_cache():
    from simplug.plugins.cache.memory import MemoryCache

    return MemoryCache


def test_a_cache_backend_that_ignores_the_positions_fails():
    class WritesInArrivalOrder(_memory_cache()):
        next_row = 0

        def write(self, positions, embeddings):
            self.storage[self.next_row : self.next_row + len(positions)] = embeddings.to(self.dtype)
            self.next_row += len(positions)

    with pytest.raises(AssertionError, match=r"cache backend 'wrong': rows\(\[3, 0, 5, 3, 1\]\) after write\(\) at "
                                             r"positions \[4, 0, 2, 5, 1, 3\] in torch.float32 does not return the rows "
                                             r"written at those positions"):
        check_cache_backend(WritesInArrivalOrder, name="wrong")


def test_a_cache_backend_that_ignores_half_precision_fails():
    class AlwaysFloat32(_memory_cache()):
        def allocate(self):
            return torch.zeros(self.num_rows, self.embedding_size)

    with pytest.raises(AssertionError, match=r"cache backend 'wrong': storage is \(6, 5\) torch.float32; allocate\(\) "
                                             r"must return the table, a \(6, 5\) tensor of torch.float16"):
        check_cache_backend(AlwaysFloat32, name="wrong")


def test_a_cache_backend_whose_new_table_is_not_zeros_fails():
    class Uninitialised(_memory_cache()):
        def allocate(self):
            return torch.full((self.num_rows, self.embedding_size), float("nan"), dtype=self.dtype)

    with pytest.raises(AssertionError, match=r"cache backend 'wrong': a new table is not all zeros"):
        check_cache_backend(Uninitialised, name="wrong")


def test_a_cache_backend_that_saves_its_own_format_fails(tmp_path):
    class SavesWithTorchSave(_memory_cache()):
        def save_file(self, path):
            torch.save(self.storage, path)

        def load_file(self, path):
            self.storage.copy_(torch.load(path))

    with pytest.raises(AssertionError, match=r"cache backend 'wrong': save_file wrote \d+ bytes for 6 rows of 5 "
                                             r"torch.float32 values; the cache file format is the raw rows"):
        check_cache_backend(SavesWithTorchSave, name="wrong")


def test_a_cache_backend_that_does_not_load_fails():
    class ForgetsOnLoad(_memory_cache()):
        def load_file(self, path):
            pass

    with pytest.raises(AssertionError, match=r"cache backend 'wrong': rows\(\[3, 0, 5, 3, 1\]\) after load_file\(\) "
                                             r"of a saved cache file does not return the rows"):
        check_cache_backend(ForgetsOnLoad, name="wrong")


def test_a_cache_backend_that_accepts_a_wrong_width_fails():
    class Lenient(_memory_cache()):
        def write(self, positions, embeddings):
            width = min(embeddings.shape[1], self.embedding_size)
            self.storage[positions, :width] = embeddings[:, :width].to(self.dtype)

    with pytest.raises(AssertionError, match=r"cache backend 'wrong': write\(\) accepted embeddings of width 6 for a "
                                             r"table of embedding_size 5; it must raise ValueError"):
        check_cache_backend(Lenient, name="wrong")


def test_a_file_backed_cache_backend_that_deletes_its_cache_file_fails():
    import os

    from simplug.plugins.cache.disk import DiskCache

    class DeletesOnClose(DiskCache):
        def close(self):
            path = self.path
            super().close()
            if os.path.exists(path):  # its own temporary file is already gone
                os.remove(path)

    with pytest.raises(AssertionError, match=r"cache backend 'wrong': close\(\) removed or changed the cache file"):
        check_cache_backend(DeletesOnClose, name="wrong")


def test_a_cache_backend_that_is_not_a_cache_backend_fails():
    with pytest.raises(AssertionError, match=r"cache backend 'wrong' is a dict, not a simplug.components.cache_backend.CacheBackend"):
        check_cache_backend(lambda *args, **kwargs: {}, name="wrong")


# --------------------------------------------------------------------------- registry helpers
def _hooks_module(name: str, **components: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def register_heads(register):
        for component, target in components.items():
            register(component, target)

    module.register_heads = hookimpl(register_heads)
    return module


def test_isolated_registry_has_builtins_only_and_is_the_process_registry(isolated_registry):
    assert get_registry() is isolated_registry
    assert "cosine" in isolated_registry.names("distances")
    assert {p.distribution for p in isolated_registry.plugins} == {"simplug"}


def test_registered_plugin_lasts_for_the_block(isolated_registry):
    module = _hooks_module("my_test_hooks", temporary_head="simplug.plugins.heads.empty:EmptyHead")
    with registered_plugin(module) as info:
        assert info.status == "ok" and info.hooks == ["register_heads"]
        assert isolated_registry.resolve("heads", "temporary_head").__name__ == "EmptyHead"
    assert "temporary_head" not in isolated_registry.names("heads")
    with registered_plugin(module):  # registering again works after removal
        assert "temporary_head" in isolated_registry.names("heads")


def test_registered_plugin_reports_a_broken_module():
    registry = Registry(autoload=False)
    module = types.ModuleType("wrong_args")

    def register_heads(reg):
        reg("x", "simplug.plugins.heads.empty:EmptyHead")

    module.register_heads = hookimpl(register_heads)
    with pytest.raises(AssertionError, match=r"register_heads\(reg\) \(expected register_heads\(register\)\)"):
        with registered_plugin(module, registry=registry):
            pass
    assert registry.plugins == []


@pytest.mark.parametrize("signature", ["reg", "", "register, extra"])
def test_wrong_hook_arguments_name_the_plugin_and_the_expected_signature(signature):
    namespace: dict = {}
    exec(f"def register_losses({signature}):\n    pass", namespace)
    module = types.ModuleType("argplugin")
    module.register_losses = hookimpl(namespace["register_losses"])
    info = Registry(autoload=False).add_plugin(module, name="args", distribution="args-dist", version="2.0")
    assert info.status == "broken"
    assert f"register_losses({signature}) (expected register_losses(register))" in info.error
    from simplug.errors import PluginError

    with pytest.raises(PluginError, match=r"plugin 'args' from args-dist 2.0 is broken: .*expected register_losses\(register\)"):
        Registry(autoload=False, strict=True).add_plugin(module, name="args", distribution="args-dist", version="2.0")


def test_a_plugin_is_disabled_by_its_entry_point_name_in_either_spelling(monkeypatch):
    module = _hooks_module("underscore_hooks", underscored="simplug.plugins.heads.empty:EmptyHead")
    dist = types.SimpleNamespace(metadata={"Name": "simplug-some-dist"}, version="1.0")
    ep = types.SimpleNamespace(name="my_entry", value="underscore_hooks", dist=dist, load=lambda: module)
    monkeypatch.setattr(Registry, "entry_points", staticmethod(lambda: [ep]))
    for spelling in ("my_entry", "My-Entry", "simplug_some_dist"):
        monkeypatch.setenv("SIMPLUG_DISABLE_PLUGINS", f"other,{spelling}")
        registry = Registry()
        assert [p.status for p in registry.plugins] == ["disabled"], spelling
        assert registry.names("heads") == []
    monkeypatch.delenv("SIMPLUG_DISABLE_PLUGINS")
    assert Registry().names("heads") == ["underscored"]


def test_simplug_list_reports_a_wrong_hook_with_the_plugin_and_the_expected_signature(monkeypatch):
    from typer.testing import CliRunner

    from simplug.cli import app

    namespace: dict = {}
    exec("def register_heads(reg):\n    pass\n\ndef register_loss(register):\n    pass", namespace)
    wrong_args, unknown = types.ModuleType("wrong_args_hooks"), types.ModuleType("unknown_hooks")
    wrong_args.register_heads = hookimpl(namespace["register_heads"])
    unknown.register_loss = hookimpl(namespace["register_loss"])
    eps = [
        types.SimpleNamespace(name=ep_name, value=module.__name__, load=lambda module=module: module,
                              dist=types.SimpleNamespace(metadata={"Name": dist}, version="0.2.0"))
        for ep_name, module, dist in (("wrong_args", wrong_args, "simplug-wrong-args"), ("typo", unknown, "simplug-typo"))
    ]
    monkeypatch.setattr(Registry, "entry_points", staticmethod(lambda: eps))
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert ("wrong_args (simplug-wrong-args 0.2.0) is broken: hook(s) with the wrong arguments: "
            "register_heads(reg) (expected register_heads(register))") in output
    assert "typo (simplug-typo 0.2.0) is broken: implements unknown hook(s) register_loss" in output
    assert "register_losses(register)" in output
