"""Models saved by the original quaterion-models (tests/compat_data): loaded by the drop-in and
converted to simplug models that encode as the original did."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from compat_site import compat_site, fresh_registry  # noqa: F401  (fixtures)

DATA = Path(__file__).parent / "compat_data"
EXPECTED = json.loads((DATA / "expected.json").read_text())


def test_the_drop_in_loads_the_originals_model(compat_site):
    from quaterion_models import SimilarityModel

    model = SimilarityModel.load(str(DATA / "skip_connection"))
    assert np.allclose(model.encode(EXPECTED["inputs"]), EXPECTED["skip_connection"], atol=1e-6)


def test_the_drop_in_refuses_the_originals_pickled_sequential_head(compat_site):
    from quaterion_models import SimilarityModel

    with pytest.raises(ValueError, match="convert_quaterion_model"):
        SimilarityModel.load(str(DATA / "sequential"))


@pytest.mark.parametrize("name", ["skip_connection", "sequential"])
def test_converted_models_encode_like_the_original(fresh_registry, tmp_path, name):
    from quaterion_models.convert import ConversionError, convert_quaterion_model
    from simplug.serving import SimilarityModel as NativeModel

    old = tmp_path / "old"
    shutil.copytree(DATA / name, old)
    with pytest.raises(ConversionError, match="trust_code"):
        convert_quaterion_model(str(old), str(tmp_path / "refused"))
    new = convert_quaterion_model(str(old), str(tmp_path / "new"), trust_code=True)
    native = NativeModel.load(new, trust_local_code=True)
    assert np.allclose(native.encode(EXPECTED["inputs"]), EXPECTED[name], atol=1e-6)
    manifest = json.loads((Path(new) / "manifest.json").read_text())
    head = next(c for c in manifest["components"] if c["role"] == "head")
    if name == "sequential":
        assert head["source"] == "plugin" and head["name"] == "sequential"  # simplug's JSON-described head
        assert not list(Path(new).rglob("*.bin"))
    else:
        assert head["distribution"] == "simplug-quaterion-compat"
    assert manifest["training"]["converted_from"] == "quaterion-models"


def test_command_line(compat_site, tmp_path, capsys):
    from quaterion_models.convert import main

    assert main([str(DATA / "skip_connection"), str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "compat_saved_encoders.TinyVectorEncoder" in err and "--trust-code" in err
    assert main([str(DATA / "skip_connection"), str(tmp_path / "new"), "--trust-code"]) == 0
    assert (tmp_path / "new" / "manifest.json").exists()
    assert main([str(tmp_path / "missing"), str(tmp_path / "x"), "--trust-code"]) == 1


def test_simplug_convert_quaterion_command(compat_site, tmp_path):
    from typer.testing import CliRunner

    from simplug.cli import app

    runner = CliRunner()
    refused = runner.invoke(app, ["convert-quaterion", str(DATA / "skip_connection"), str(tmp_path / "refused")])
    assert refused.exit_code == 1
    assert "--trust-code" in refused.output and "compat_saved_encoders.TinyVectorEncoder" in refused.output
    assert not (tmp_path / "refused").exists()
    done = runner.invoke(app, ["convert-quaterion", str(DATA / "skip_connection"), str(tmp_path / "new"), "--trust-code"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "new" / "manifest.json").exists() and "simplug serve" in done.output
