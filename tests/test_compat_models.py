"""quaterion_models through the compat distribution: heads, SwitchEncoder/SwitchHead, SimilarityModel
(encode, collate, the original's saved layout) and the converter to simplug's format."""
from __future__ import annotations

import importlib
import json
import math
import pickle
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from compat_site import compat_site, fresh_registry  # noqa: F401  (fixtures)

USER_MODULE = textwrap.dedent('''
    import json, os
    import torch
    from quaterion_models.encoders import Encoder, SwitchEncoder

    class VectorEncoder(Encoder):
        """Frozen: a fixed linear map of 3 numbers to 4."""
        def __init__(self, seed=0):
            super().__init__()
            self.seed = seed
            self.linear = torch.nn.Linear(3, 4)
            torch.nn.init.normal_(self.linear.weight, generator=torch.Generator().manual_seed(seed))

        @property
        def trainable(self):
            return False

        @property
        def embedding_size(self):
            return 4

        def get_collate_fn(self):
            return collate_vectors

        def forward(self, batch):
            return self.linear(batch)

        def save(self, output_path):
            torch.save(self.state_dict(), os.path.join(output_path, "state.pt"))
            with open(os.path.join(output_path, "seed.json"), "w") as fh:
                json.dump(self.seed, fh)

        @classmethod
        def load(cls, input_path):
            with open(os.path.join(input_path, "seed.json")) as fh:
                encoder = cls(json.load(fh))
            encoder.load_state_dict(torch.load(os.path.join(input_path, "state.pt"), weights_only=True))
            return encoder

    def collate_vectors(batch):
        return torch.tensor([[float(v) for v in record] for record in batch])

    class NegatedEncoder(VectorEncoder):
        def forward(self, batch):
            return -self.linear(batch)

    class SignSwitch(SwitchEncoder):
        @classmethod
        def encoder_selection(cls, record):
            return "positive" if record[0] >= 0 else "negative"
''')


@pytest.fixture
def user_module(compat_site, tmp_path, monkeypatch):
    name = f"compat_user_models_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield module
    sys.modules.pop(name, None)


def test_head_formulas(compat_site):
    from quaterion_models.heads import (EmptyHead, GatedHead, SkipConnectionHead, SoftmaxEmbeddingsHead,
                                        StackedProjectionHead, WideningHead)

    torch.manual_seed(0)
    x = torch.randn(5, 6)
    assert torch.equal(EmptyHead(6)(x), x)
    assert torch.allclose(GatedHead(6)(x), x * math.tanh(2.0))
    skip = SkipConnectionHead(6, n_layers=2)
    expected = x
    for i in range(2):
        fc = getattr(skip, f"fc_{i}")
        expected = fc(expected) * (1 / (1 + math.exp(4.0))) + expected
    assert torch.allclose(skip(x), expected)
    softmax = SoftmaxEmbeddingsHead(output_groups=2, output_size_per_group=3, input_embedding_size=6)
    out = softmax(x)
    assert out.shape == (5, 6) and torch.allclose(out.view(5, 2, 3).sum(-1), torch.ones(5, 2))
    stacked = StackedProjectionHead(6, [8, 4])
    assert stacked(x).shape == (5, 4) and stacked.output_size == 4
    assert [type(m).__name__ for m in stacked._stack] == ["Linear", "ActivationFromFnName", "Linear"]
    widening = WideningHead(6, expansion_factor=2.0)
    assert widening._stack[0].out_features == 12 and widening.output_size == 6
    assert widening.get_config_dict() == {"input_embedding_size": 6, "dropout": 0.0, "expansion_factor": 2.0,
                                          "activation_fn": "relu"}


def test_heads_save_and_load_round_trip(compat_site, tmp_path):
    from quaterion_models.heads import SequentialHead, SkipConnectionHead, SoftmaxEmbeddingsHead

    x = torch.randn(4, 6)
    for head in (SkipConnectionHead(6, skip_dropout=0.1, n_layers=2),
                 SoftmaxEmbeddingsHead(2, 3, 6),
                 SequentialHead(nn.Linear(6, 5), nn.ReLU(), output_size=5)):
        path = tmp_path / type(head).__name__
        with torch.no_grad():
            for p in head.parameters():
                p.add_(0.25)
        head.save(str(path))
        loaded = type(head).load(str(path))
        head.eval(), loaded.eval()
        assert torch.allclose(head(x), loaded(x))
    # SequentialHead is saved as JSON + weights: no pickle anywhere
    files = sorted(p.name for p in (tmp_path / "SequentialHead").iterdir())
    assert files == ["config.json", "layers.json", "weights.bin"]
    torch.load(tmp_path / "SequentialHead" / "weights.bin", weights_only=True)


def test_sequential_head_interface(compat_site):
    from quaterion_models.heads import SequentialHead

    head = SequentialHead(nn.Linear(3, 4), output_size=4).append(nn.Tanh())
    assert len(head) == 2 and isinstance(head[1], nn.Tanh) and head.output_size == 4
    with pytest.raises(TypeError):
        SequentialHead(nn.Linear(3, 4), 4)  # output_size is keyword-only


def test_switch_encoder_and_head_route_rows(user_module, tmp_path):
    from quaterion_models import SimilarityModel
    from quaterion_models.heads import EmptyHead, GatedHead, SwitchHead

    switch = user_module.SignSwitch({"positive": user_module.VectorEncoder(1),
                                     "negative": user_module.NegatedEncoder(2)})
    head = SwitchHead({"positive": EmptyHead(4), "negative": GatedHead(4)}, 4)
    model = SimilarityModel(switch, head)
    records = [[1, 2, 3], [-1, 0, 1], [0, 5, 5], [-3, -3, -3]]
    out = model.encode(records, to_numpy=False)
    pos, neg = switch.options["positive"], switch.options["negative"]
    with torch.no_grad():
        assert torch.allclose(out[0], pos.linear(torch.tensor([1.0, 2, 3])))
        assert torch.allclose(out[1], -neg.linear(torch.tensor([-1.0, 0, 1])) * math.tanh(2.0))
    assert switch.extract_meta(records) == [{"encoder": k} for k in ("positive", "negative", "positive", "negative")]
    model.save(str(tmp_path / "switch"))
    again = SimilarityModel.load(str(tmp_path / "switch"))
    assert np.allclose(again.encode(records), out.numpy(), atol=1e-6)
    with pytest.raises(RuntimeError, match="inconsistent output size"):
        class Wide(user_module.VectorEncoder):
            @property
            def embedding_size(self):
                return 5
        user_module.SignSwitch({"positive": Wide(), "negative": user_module.VectorEncoder()})


def test_similarity_model_encode_save_load(user_module, tmp_path):
    from quaterion_models import SimilarityModel
    from quaterion_models.heads import SkipConnectionHead
    from quaterion_models.model import DEFAULT_ENCODER_KEY

    model = SimilarityModel({"b": user_module.VectorEncoder(1), "a": user_module.VectorEncoder(2)},
                            SkipConnectionHead(8))
    assert model.get_encoders_output_size(model.encoders) == 8
    assert all(not p.requires_grad for p in model.encoders["a"].parameters())
    records = [[1, 2, 3], [3, 2, 1], [0, 0, 1]]
    batch = model.get_collate_fn()(records)
    assert set(batch) == {"data", "meta"} and batch["meta"] == [{}, {}, {}]
    with torch.no_grad():
        expected = model.head(torch.cat([model.encoders["a"](batch["data"]["a"]),
                                         model.encoders["b"](batch["data"]["b"])], dim=1))
    encoded = model.encode(records, batch_size=2)
    assert isinstance(encoded, np.ndarray) and np.allclose(encoded, expected.numpy(), atol=1e-6)
    single = model.encode((1, 2, 3))  # one record (not a list): wrapped, as in the original
    assert single.shape == (1, 8)
    pickle.loads(pickle.dumps(model.get_collate_fn()))  # picklable for worker processes
    model.save(str(tmp_path / "m"))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["head"] == {"module": "quaterion_models.heads.skip_connection_head", "class": "SkipConnectionHead"}
    assert sorted(r["key"] for r in config["encoders"]) == ["a", "b"]
    assert (tmp_path / "m" / "head" / "weights.bin").exists() and (tmp_path / "m" / "encoders" / "a").is_dir()
    loaded = SimilarityModel.load(str(tmp_path / "m"))
    assert np.allclose(loaded.encode(records), encoded, atol=1e-6)
    assert DEFAULT_ENCODER_KEY in SimilarityModel(user_module.VectorEncoder(), SkipConnectionHead(4)).encoders


def test_converter_refuses_without_trust_and_converts_with_it(user_module, tmp_path, fresh_registry):
    from quaterion_models import SimilarityModel
    from quaterion_models.convert import ConversionError, convert_quaterion_model, main
    from quaterion_models.heads import SkipConnectionHead
    from simplug.serving import SimilarityModel as NativeModel

    model = SimilarityModel(user_module.VectorEncoder(3), SkipConnectionHead(4))
    with torch.no_grad():
        model.head.gates_0.fill_(1.0)
    old = tmp_path / "old"
    model.save(str(old))
    records = [[1, 2, 3], [0, 1, 0]]
    with pytest.raises(ConversionError, match="trust_code=True") as excinfo:
        convert_quaterion_model(str(old), str(tmp_path / "new"), trust_code=False)
    assert f"{user_module.__name__}.VectorEncoder" in str(excinfo.value)
    assert not (tmp_path / "new").exists()
    assert main([str(old), str(tmp_path / "cli")]) == 2 and not (tmp_path / "cli").exists()

    out = convert_quaterion_model(str(old), str(tmp_path / "new"), trust_code=True)
    manifest = json.loads((tmp_path / "new" / "manifest.json").read_text())
    head = next(c for c in manifest["components"] if c["role"] == "head")
    assert head["distribution"] == "simplug-quaterion-compat" and head["name"] == "quaterion_skip_connection"
    native = NativeModel.load(out, trust_local_code=True)
    assert np.allclose(native.encode(records), model.encode(records), atol=1e-6)
    with pytest.raises(ConversionError, match="not empty"):
        convert_quaterion_model(str(old), out, trust_code=True)


def test_converter_reads_the_originals_pickled_sequential_head_only_with_trust(user_module, tmp_path):
    from quaterion_models.convert import ConversionError, _load_head

    head_dir = tmp_path / "head"
    head_dir.mkdir()
    torch.save(nn.Sequential(nn.Linear(4, 2)), head_dir / "weights.bin")  # the original's format
    (head_dir / "config.json").write_text(json.dumps({"output_size": 2}))
    record = {"module": "quaterion_models.heads.sequential_head", "class": "SequentialHead"}
    with pytest.raises(ConversionError, match="pickling"):
        _load_head(record, str(head_dir), trust_code=False)
    head = _load_head(record, str(head_dir), trust_code=True)
    assert head(torch.randn(3, 4)).shape == (3, 2)
