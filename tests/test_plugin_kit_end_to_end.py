"""The plugin author's path, end to end: generate a head with ``simplug new-plugin``, edit it as a
user would (the conformance check catches the first, faulty edit), install it, list it, train
with it by name, save, and serve in a fresh process; then a version change warns, a major one fails."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli
from simplug.model.manifest import requirements
from plugin_site import pip_install_editable, run_cli_in_site, run_in_site, run_pytest_in_site

DIST = "simplug-my-head"

TRAIN = """
import torch
from torch import nn
from simplug import GroupSimilarityDataLoader, Quaterion, SimilarityGroupSample, TrainableModel
from simplug.plugins.encoders.torch_module import TorchModuleEncoder

torch.manual_seed(0)
centres = torch.randn(4, 8) * 2
samples = [SimilarityGroupSample(obj=centres[g] + torch.randn(8), group=g) for g in range(4) for _ in range(10)]
encoder = TorchModuleEncoder(nn.Sequential(nn.Linear(8, 12), nn.Tanh()), input_size=8)
model = TrainableModel.from_config({
    "encoder": encoder,
    "head": {"name": "my_head", "output_size": 6, "activation": "relu"},
    "loss": {"name": "triplet", "mining": "all"},
    "optimizer": {"name": "adam", "lr": 0.01},
})
before = model.model.head.projection.weight.detach().clone()
Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(samples, batch_size=40), max_epochs=2, logger=False,
              enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
assert not torch.equal(before, model.model.head.projection.weight), "training did not change the plugin's head"
inputs = torch.randn(5, 8)
torch.save(inputs, OUT + "/inputs.pt")
torch.save(model.model.encode(list(inputs), to_numpy=False), OUT + "/expected.pt")
model.save_servable(OUT + "/model")
print("SAVED", type(model.model.head).__module__)
"""

SERVE = """
import warnings, torch
from simplug.serving import SimilarityModel
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = SimilarityModel.load(OUT + "/model")
got = model.encode(list(torch.load(OUT + "/inputs.pt")), to_numpy=False)
assert torch.equal(got, torch.load(OUT + "/expected.pt")), "served embeddings differ from the trained model's"
print("SERVED", type(model.head).__name__, model.head.activation, "pytorch_lightning" in sys.modules)
print("WARNINGS", [str(w.message) for w in caught])
"""


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"the generated {path.name} changed; update this test's edit"
    path.write_text(text.replace(old, new))


def test_generate_edit_install_list_train_save_and_serve(tmp_path):
    created = run_cli("new-plugin", DIST, "--kind", "heads", "--dir", str(tmp_path))
    assert created.returncode == 0, created.stderr
    package = tmp_path / DIST
    head_py = package / "simplug_my_head" / "head.py"

    # the user's edit: an activation before the projection, tested with a non-default value,
    # but (the classic mistake) not recorded in get_config_dict
    _edit(head_py, "normalize: bool = True, dropout: float = 0.0):",
          'normalize: bool = True, dropout: float = 0.0,\n                 activation: str = "tanh"):')
    _edit(head_py, "        self.projection = nn.Linear(input_embedding_size, output_size)\n",
          "        self.projection = nn.Linear(input_embedding_size, output_size)\n"
          "        if activation not in ACTIVATIONS:\n"
          "            raise ValueError(f'activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}')\n"
          "        self.activation = activation\n")
    _edit(head_py, "out = self.projection(input_vectors)", "out = self.projection(ACTIVATIONS[self.activation](input_vectors))")
    _edit(head_py, "class MyHead(", "ACTIVATIONS = {'tanh': torch.tanh, 'relu': torch.relu}\n\n\nclass MyHead(")
    _edit(package / "tests" / "test_my_head.py", "def test_normalized_outputs_have_unit_length():",
          "def test_relu_activation_keeps_the_contract():\n"
          "    check_head(MyHead(input_embedding_size=12, output_size=8, activation='relu'), name='my_head')\n\n\n"
          "def test_normalized_outputs_have_unit_length():")
    _edit(package / "pyproject.toml", 'version = "0.1.0"', 'version = "1.0.0"')

    site_dir = tmp_path / "site"
    pip_install_editable(site_dir, package)
    first = run_pytest_in_site(site_dir, package, cwd=package)
    assert first.returncode != 0
    assert "head 'my_head': save/load is not bit-identical" in first.stdout, first.stdout[-3000:]
    assert "1 failed" in first.stdout

    # the fix the message points at; an editable install needs no reinstall
    _edit(head_py, '"normalize": self.normalize}', '"normalize": self.normalize,\n                "activation": self.activation}')
    fixed = run_pytest_in_site(site_dir, package, cwd=package)
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-2000:]

    listing = run_cli_in_site(site_dir, "list", "--kind", "heads", "--json")
    assert listing.returncode == 0, listing.stderr
    row = next(r for r in json.loads(listing.stdout) if r["name"] == "my_head")
    assert (row["distribution"], row["version"], row["plugin"], row["status"]) == (DIST, "1.0.0", "my_head", "ok")

    out = tmp_path / "run"
    out.mkdir()
    trained = run_in_site(site_dir, f"OUT = {str(out)!r}\n{TRAIN}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "SAVED simplug_my_head.head" in trained.stdout
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    head = next(c for c in manifest["components"] if c["role"] == "head")
    assert (head["name"], head["distribution"], head["version"]) == ("my_head", DIST, "1.0.0")
    assert head["config"]["activation"] == "relu"
    assert f"{DIST}==1.0.0" in requirements(manifest)

    serve = f"OUT = {str(out)!r}\n{SERVE}"
    served = run_in_site(site_dir, serve)
    assert served.returncode == 0, served.stderr[-3000:]
    assert "SERVED MyHead relu False" in served.stdout and "WARNINGS []" in served.stdout

    # a minor version change warns, a major one is an error naming the version to install
    # (each version in a site directory of its own: pip --target keeps the old dist-info beside the new)
    _edit(package / "pyproject.toml", 'version = "1.0.0"', 'version = "1.1.0"')
    pip_install_editable(tmp_path / "site-1.1", package)
    minor = run_in_site(tmp_path / "site-1.1", serve)
    assert minor.returncode == 0, minor.stderr[-3000:]
    assert f"model saved with {DIST} 1.0.0, loading with 1.1.0" in minor.stdout

    _edit(package / "pyproject.toml", 'version = "1.1.0"', 'version = "2.0.0"')
    pip_install_editable(tmp_path / "site-2.0", package)
    major = run_in_site(tmp_path / "site-2.0", serve)
    assert major.returncode != 0
    assert "MissingPluginError" in major.stderr and "another major version" in major.stderr
    assert f"pip install '{DIST}==1.0.0'" in major.stderr
