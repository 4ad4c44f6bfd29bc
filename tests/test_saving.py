from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_cli, run_python
from simplug import TrainableModel
from simplug.errors import MissingPluginError, ModelFormatError, UntrustedCodeError
from simplug.model.manifest import FORMAT_VERSION, read_manifest
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.serving import SimilarityModel


def build(seed: int = 0) -> TrainableModel:
    torch.manual_seed(seed)
    enc = TorchModuleEncoder(nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.LayerNorm(10)), input_size=6)
    model = TrainableModel.from_config({"encoder": enc, "head": {"name": "skip_connection", "n_layers": 2}, "loss": "triplet"})
    with torch.no_grad():  # move the head away from its initial values
        for p in model.model.head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture
def saved(tmp_path):
    model = build()
    path = str(tmp_path / "model")
    model.save_servable(path)
    return model, path


def test_round_trip_is_bit_identical(saved):
    model, path = saved
    inputs = [torch.randn(6) for _ in range(7)]
    loaded = SimilarityModel.load(path)
    assert np.array_equal(loaded.encode(inputs, batch_size=3), model.model.encode(inputs, batch_size=3))
    as_tensor = loaded.encode(inputs, to_numpy=False)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.shape == (7, 10)


def test_manifest_records_every_component(saved):
    _, path = saved
    manifest = json.loads(open(os.path.join(path, "manifest.json")).read())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["simplug_version"]
    roles = {c["role"]: c for c in manifest["components"]}
    assert set(roles) == {"encoder:default", "head"}
    head = roles["head"]
    for key in ("kind", "name", "entry_point", "distribution", "version", "config"):
        assert head[key] not in (None, "")
    assert head["name"] == "skip_connection" and head["config"]["n_layers"] == 2
    assert manifest["training"]["loss"]["name"] == "simplug:triplet"
    assert all(name.endswith((".safetensors", ".json", ".md")) for name in manifest["files"])
    assert not any(name.endswith((".pt", ".pkl", ".bin")) for name in os.listdir(path))


def test_saving_over_a_model_is_atomic(saved, monkeypatch):
    model, path = saved
    before = open(os.path.join(path, "manifest.json")).read()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("simplug.model.similarity_model.write_manifest", crash)
    with pytest.raises(OSError, match="disk full"):
        build(seed=1).save_servable(path)
    assert open(os.path.join(path, "manifest.json")).read() == before
    assert SimilarityModel.load(path) is not None
    # no temporary folder is left; the lock file stays (deleting a lock file is unsafe)
    assert [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".")] == [".model.lock"]


def test_unknown_format_version_is_refused(saved):
    _, path = saved
    manifest_path = os.path.join(path, "manifest.json")
    manifest = json.load(open(manifest_path))
    manifest["format_version"] = 99
    json.dump(manifest, open(manifest_path, "w"))
    with pytest.raises(ModelFormatError, match="format version 99.*upgrade simplug"):
        SimilarityModel.load(path)


@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped"])
def test_damaged_weights_are_detected(saved, damage):
    _, path = saved
    weights = os.path.join(path, "head.safetensors")
    data = open(weights, "rb").read()
    if damage == "missing":
        os.remove(weights)
        expected = "head.safetensors is missing"
    elif damage == "truncated":
        open(weights, "wb").write(data[: len(data) // 2])
        expected = "truncated"
    else:
        open(weights, "wb").write(data[:-1] + bytes([data[-1] ^ 1]))
        expected = "does not match its checksum"
    with pytest.raises(ModelFormatError, match=expected):
        SimilarityModel.load(path)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelFormatError, match="not a simplug model"):
        SimilarityModel.load(str(tmp_path))
    result = run_cli("info", str(tmp_path))
    assert result.returncode == 1 and "not a simplug model" in result.stderr


def test_info_and_requirements(saved):
    _, path = saved
    info = run_cli("info", path)
    assert info.returncode == 0, info.stderr
    assert "skip_connection" in info.stdout and "torch_module" in info.stdout
    req = run_cli("requirements", path)
    import simplug

    assert req.stdout.split() == [f"simplug=={simplug.__version__}"]


def test_a_missing_plugin_names_the_distribution_to_install(saved):
    _, path = saved
    manifest_path = os.path.join(path, "manifest.json")
    manifest = json.load(open(manifest_path))
    head = [c for c in manifest["components"] if c["role"] == "head"][0]
    head.update(distribution="simplug-fancy-heads", version="2.1.0", plugin="fancy")
    json.dump(manifest, open(manifest_path, "w"))
    with pytest.raises(MissingPluginError, match=r"pip install 'simplug-fancy-heads==2\.1\.0'"):
        SimilarityModel.load(path)
    assert "simplug-fancy-heads==2.1.0" in run_cli("requirements", path).stdout


def test_serving_imports_no_training_code_and_no_unrelated_plugin(saved):
    model, path = saved
    code = textwrap.dedent(
        f"""
        import sys, torch
        from simplug.serving import SimilarityModel
        model = SimilarityModel.load({path!r})
        out = model.encode([torch.ones(6)], batch_size=1)
        print(out.shape)
        bad = [m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning', 'pytorch_metric_learning')]
        print('TRAINING', bad)
        print('UNRELATED', [m for m in sys.modules if m.startswith(('simplug.plugins.losses', 'simplug.plugins.metrics', 'simplug.plugins.cache'))])
        """
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "(1, 10)" in result.stdout
    assert "TRAINING []" in result.stdout
    assert "UNRELATED []" in result.stdout


LOCAL_SCRIPT = '''
import torch
from torch import nn
from simplug import TrainableModel
from simplug.components.head import EncoderHead
from simplug.plugins.encoders.torch_module import TorchModuleEncoder

SCALE = 3.0

def helper(x):
    return torch.tanh(x) * SCALE

class Squash(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.width = width
        self.lin = nn.Linear(width, width)

    def forward(self, x):
        return helper(self.lin(x))

class MyHead(EncoderHead):
    def __init__(self, input_embedding_size, out=4):
        super().__init__(input_embedding_size)
        self.out = out
        self.proj = nn.Linear(input_embedding_size, out)

    @property
    def output_size(self):
        return self.out

    def transform(self, x):
        return self.proj(x)

    def get_config_dict(self):
        return {"input_embedding_size": self.input_embedding_size, "out": self.out}

print("this line must not run when the model is loaded")

if __name__ == "__main__":
    import sys
    torch.manual_seed(0)
    encoder = TorchModuleEncoder(Squash(5), embedding_size=5)
    model = TrainableModel.from_config({"encoder": encoder, "head": MyHead(5), "loss": "triplet"})
    model.save_servable(sys.argv[1])
    import numpy as np
    np.save(sys.argv[2], model.model.encode([torch.arange(5.0), torch.ones(5)]))
'''


def test_local_code_needs_trust_and_then_round_trips(tmp_path):
    script = tmp_path / "my_script.py"
    script.write_text(LOCAL_SCRIPT)
    model_dir, expected = tmp_path / "model", tmp_path / "expected.npy"
    import subprocess
    import sys

    subprocess.run([sys.executable, str(script), str(model_dir), str(expected)], check=True, cwd=tmp_path, capture_output=True)
    manifest = read_manifest(str(model_dir))
    head = [c for c in manifest["components"] if c["role"] == "head"][0]
    assert head["source"] == "local" and head["class"].endswith(":MyHead")
    saved_code = "".join(open(model_dir / e["file"]).read() for e in manifest["local_code"])
    assert "must not run" not in saved_code  # only the classes and what they use

    untrusted = run_python(f"from simplug.serving import SimilarityModel; SimilarityModel.load({str(model_dir)!r})")
    assert untrusted.returncode != 0 and "UntrustedCodeError" in untrusted.stderr and "trust_local_code=True" in untrusted.stderr
    with pytest.raises(UntrustedCodeError):
        SimilarityModel.load(str(model_dir))

    trusted = run_python(
        "import numpy as np, torch\n"
        "from simplug.serving import SimilarityModel\n"
        f"m = SimilarityModel.load({str(model_dir)!r}, trust_local_code=True)\n"
        f"assert np.array_equal(m.encode([torch.arange(5.0), torch.ones(5)]), np.load({str(expected)!r}))\n"
        "print('OK')\n",
        cwd="/",
    )
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.strip() == "OK"


def test_encode_rejects_a_bare_string(saved):
    _, path = saved
    with pytest.raises(TypeError, match=r"encode\(\[obj\]\)"):
        SimilarityModel.load(path).encode("hello")


@pytest.mark.parametrize("relative", ["model", "./model", "sub/../model"])
def test_a_model_loads_by_a_path_relative_to_the_working_directory(saved, tmp_path, monkeypatch, relative):
    model, path = saved
    monkeypatch.chdir(tmp_path)
    inputs = [torch.randn(6) for _ in range(4)]
    (tmp_path / "sub").mkdir(exist_ok=True)
    loaded = SimilarityModel.load(relative)
    assert np.array_equal(loaded.encode(inputs), model.model.encode(inputs))
