"""The example plugin packages under examples/plugins: installed, their own tests run, and both
used by name in one training config, saved and served in a fresh process."""
from __future__ import annotations

import json
from pathlib import Path

from plugin_site import pip_install_editable, run_in_site, run_pytest_in_site

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "plugins"
PACKAGES = [EXAMPLES / "simplug-attention-pooling", EXAMPLES / "simplug-sigmoid-loss"]

TRAIN = """
import torch
from torch import nn
from simplug import PairsSimilarityDataLoader, Quaterion, SimilarityPairSample, TrainableModel
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.registry import get_registry

assert "attention_pooling" in get_registry().names("heads") and "sigmoid_pairs" in get_registry().names("losses")
torch.manual_seed(0)
base = torch.randn(48, 12)
samples = [SimilarityPairSample(obj_a=x, obj_b=x + 0.2 * torch.randn(12), score=1.0, subgroup=i % 3)
           for i, x in enumerate(base)]
encoders = {  # two encoders reading the same object; the head gets [a (5 values), b (7 values)]
    "a": TorchModuleEncoder(nn.Linear(12, 5), embedding_size=5),
    "b": TorchModuleEncoder(nn.Sequential(nn.Linear(12, 7), nn.Tanh()), embedding_size=7),
}
model = TrainableModel.from_config({
    "encoders": encoders,
    "head": {"name": "attention_pooling", "encoder_sizes": [5, 7], "hidden_size": 8, "num_heads": 2},
    "loss": {"name": "sigmoid_pairs", "scale": 5.0, "bias": -2.0},
    "optimizer": {"name": "adam", "lr": 0.01},
})
loader = PairsSimilarityDataLoader(samples, batch_size=16, shuffle=True)
Quaterion.fit(model, train_dataloader=loader, max_epochs=3, logger=False, enable_progress_bar=False,
              enable_model_summary=False, enable_checkpointing=False)
inputs = torch.randn(6, 12)
torch.save(inputs, OUT + "/inputs.pt")
torch.save(model.model.encode(list(inputs), to_numpy=False), OUT + "/expected.pt")
model.save_servable(OUT + "/model")
print("SAVED")
"""

SERVE = """
import torch
from simplug.serving import SimilarityModel
model = SimilarityModel.load(OUT + "/model")
got = model.encode(list(torch.load(OUT + "/inputs.pt")), to_numpy=False)
assert torch.equal(got, torch.load(OUT + "/expected.pt"))
weights = model.head.pooling_weights(torch.randn(3, 12))
assert weights.shape == (3, 2)
print("SERVED", type(model.head).__name__, sorted(model.encoders), "pytorch_lightning" in sys.modules,
      "simplug_sigmoid_loss" in sys.modules)
"""


def test_example_plugins_pass_their_tests_and_train_save_and_serve_by_name(tmp_path):
    site_dir = tmp_path / "site"
    pip_install_editable(site_dir, *PACKAGES)
    own = run_pytest_in_site(site_dir, *(p / "tests" for p in PACKAGES), cwd=EXAMPLES)
    assert own.returncode == 0, own.stdout[-3000:] + own.stderr[-2000:]
    assert "11 passed" in own.stdout

    out = tmp_path / "run"
    out.mkdir()
    trained = run_in_site(site_dir, f"OUT = {str(out)!r}\n{TRAIN}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    head = next(c for c in manifest["components"] if c["role"] == "head")
    assert (head["name"], head["distribution"], head["version"]) == ("attention_pooling", "simplug-attention-pooling", "1.0.0")
    assert head["config"]["encoder_sizes"] == [5, 7]
    assert manifest["training"]["loss"]["name"] == "simplug-sigmoid-loss:sigmoid_pairs"

    served = run_in_site(site_dir, f"OUT = {str(out)!r}\n{SERVE}")
    assert served.returncode == 0, served.stderr[-3000:]
    # serving imports the head's plugin, not the loss's (a loss is not part of a servable model)
    assert "SERVED AttentionPoolingHead ['a', 'b'] False False" in served.stdout
