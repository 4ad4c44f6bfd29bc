"""A real outside plugin package, pip-installed into this environment and removed again."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from conftest import PLUGIN_PACKAGES, run_cli, run_python

DIST = "simplug-test-head"
VERSION = "0.3.1"


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed_plugin():
    _pip("install", "--quiet", "--no-deps", str(PLUGIN_PACKAGES / "simplug_test_head"))
    try:
        yield
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", DIST], capture_output=True, timeout=300)


def test_outside_plugin_lifecycle(installed_plugin, tmp_path, fresh_registry):
    # 1. listed
    rows = json.loads(run_cli("list", "--kind", "heads", "--json").stdout)
    mine = [r for r in rows if r["name"] == "projection"]
    assert mine and mine[0]["distribution"] == DIST and mine[0]["version"] == VERSION and mine[0]["status"] == "ok"

    # 2. used by name in a config (in this process: the registry rediscovers plugins)
    import importlib

    importlib.invalidate_caches()
    from simplug import TrainableModel
    from simplug.plugins.encoders.torch_module import TorchModuleEncoder

    torch.manual_seed(0)
    encoder = TorchModuleEncoder(nn.Linear(8, 12), embedding_size=12)
    model = TrainableModel.from_config(
        {"encoder": encoder, "head": {"name": "projection", "output_size": 5}, "loss": "triplet"}
    )
    assert type(model.model.head).__module__ == "simplug_test_head.head"
    inputs = [torch.randn(8) for _ in range(4)]
    expected = model.model.encode(inputs)
    path = tmp_path / "model"
    model.save_servable(str(path))

    # 3. the manifest records its distribution and version
    manifest = json.loads((path / "manifest.json").read_text())
    head = [c for c in manifest["components"] if c["role"] == "head"][0]
    assert (head["distribution"], head["version"], head["name"], head["plugin"]) == (DIST, VERSION, "projection", "test_head")
    assert f"{DIST}=={VERSION}" in run_cli("requirements", str(path)).stdout

    # 4. a fresh serving process loads it, importing only what the manifest names
    torch.save(torch.stack(inputs), tmp_path / "inputs.pt")
    import numpy as np

    np.save(tmp_path / "expected.npy", expected)
    probe = (
        "import sys, torch, numpy as np\n"
        "from simplug.serving import SimilarityModel\n"
        f"m = SimilarityModel.load({str(path)!r})\n"
        f"x = list(torch.load({str(tmp_path / 'inputs.pt')!r}))\n"
        f"assert np.array_equal(m.encode(x), np.load({str(tmp_path / 'expected.npy')!r}))\n"
        "print('LOADED', type(m.head).__name__, 'pytorch_lightning' in sys.modules)\n"
    )
    served = run_python(probe)
    assert served.returncode == 0, served.stderr
    assert "LOADED ProjectionHead False" in served.stdout

    # 5. uninstalled: a clear error naming what to install; listing still works
    _pip("uninstall", "--yes", DIST)
    gone = run_python(probe)
    assert gone.returncode != 0
    assert "MissingPluginError" in gone.stderr and f"pip install '{DIST}=={VERSION}'" in gone.stderr
    listing = run_cli("list", "--json")
    assert listing.returncode == 0, listing.stderr
    names = {r["name"] for r in json.loads(listing.stdout)}
    assert "projection" not in names and "skip_connection" in names
    assert run_cli("list").returncode == 0
