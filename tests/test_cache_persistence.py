from __future__ import annotations

import json
import os
import warnings

import pytest
import torch

from data import group_points
from simplug import GroupSimilarityDataLoader, Quaterion
from simplug.training.cache.config import CacheConfig
from test_cache import FIT, Model, make_encoder


def fit_cached(save_dir, cache_type="memory", encoder=None, data=None, shuffle=False):
    model = Model(cache=CacheConfig(cache_type, save_dir=str(save_dir), batch_size=16), encoders=encoder or make_encoder())
    data = data if data is not None else group_points(per_group=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Quaterion.fit(model, train_dataloader=GroupSimilarityDataLoader(data, batch_size=16, shuffle=shuffle),
                      **{**FIT, "max_epochs": 1})
    rebuilt = [str(w.message) for w in caught if "rebuilding the cache" in str(w.message)]
    return model, model.model.encoders["default"].calls, rebuilt


def expected_rows(encoder, data):
    return encoder.module(torch.stack([s.obj for s in data]))


@pytest.mark.parametrize("cache_type", ["memory", "disk"])
def test_a_persisted_cache_is_reused_and_rebuilt_when_the_encoder_changes(tmp_path, cache_type):
    data = group_points(per_group=8)
    _, calls, _ = fit_cached(tmp_path, cache_type, data=data)
    assert calls == 3  # 48 objects in batches of 16
    meta = json.loads((tmp_path / "default.json").read_text())
    assert meta["num_rows"] == 48 and meta["encoder"]["class"].endswith(":CountingEncoder")  # a local class
    assert len(meta["sha256"]) == 64 and len(meta["encoder"]["weights_sha256"]) == 64

    model, calls, rebuilt = fit_cached(tmp_path, cache_type, data=data)
    assert calls == 0 and not rebuilt  # read from the file, the encoder never ran
    rows = model.cache_state.backends["default"].rows(torch.arange(48))
    assert torch.allclose(rows, expected_rows(model.model.encoders["default"], data), atol=1e-6)

    changed = make_encoder()
    with torch.no_grad():
        changed.module[0].weight.mul_(2)
    model, calls, rebuilt = fit_cached(tmp_path, cache_type, encoder=changed, data=data)
    assert calls == 3 and rebuilt and "encoder or the data changed" in rebuilt[0]
    rows = model.cache_state.backends["default"].rows(torch.arange(48))
    assert torch.allclose(rows, expected_rows(changed, data), atol=1e-6)


def test_a_changed_data_set_rebuilds_the_cache(tmp_path):
    data = group_points(per_group=8)
    fit_cached(tmp_path, data=data)
    moved = list(data)
    moved[7] = type(data[7])(obj=data[7].obj + 1.0, group=data[7].group)  # same size, one object changed
    model, calls, rebuilt = fit_cached(tmp_path, data=moved)
    assert calls == 3 and rebuilt
    rows = model.cache_state.backends["default"].rows(torch.tensor([7]))
    assert torch.allclose(rows, expected_rows(model.model.encoders["default"], moved[7:8]), atol=1e-6)
    _, calls, rebuilt = fit_cached(tmp_path, data=group_points(per_group=9))  # more data
    assert calls == 4 and rebuilt


@pytest.mark.parametrize("cache_type", ["memory", "disk"])
@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_a_damaged_cache_file_is_detected_and_rebuilt(tmp_path, cache_type, damage):
    data = group_points(per_group=8)
    fit_cached(tmp_path, cache_type, data=data)
    rows_path = tmp_path / "default.rows"
    if damage == "truncate":
        with open(rows_path, "r+b") as fh:
            fh.truncate(os.path.getsize(rows_path) - 10)
        reason = "truncated"
    elif damage == "flip":
        with open(rows_path, "r+b") as fh:
            fh.seek(100)
            byte = fh.read(1)
            fh.seek(100)
            fh.write(bytes([byte[0] ^ 0xFF]))
        reason = "corrupt"
    else:
        (tmp_path / "default.json").write_text("{not json")
        reason = "unreadable"
    model, calls, rebuilt = fit_cached(tmp_path, cache_type, data=data)
    assert calls == 3 and rebuilt and reason in rebuilt[0]
    rows = model.cache_state.backends["default"].rows(torch.arange(48))
    assert torch.allclose(rows, expected_rows(model.model.encoders["default"], data), atol=1e-6)
    _, calls, rebuilt = fit_cached(tmp_path, cache_type, data=data)
    assert calls == 0 and not rebuilt  # the rebuilt file is good again


def test_the_encoder_fingerprint_names_plugin_version_config_and_weights():
    from torch import nn

    from simplug.training.cache.files import encoder_fingerprint
    from simplug.plugins.encoders.torch_module import TorchModuleEncoder

    torch.manual_seed(0)
    encoder = TorchModuleEncoder(nn.Linear(4, 3), input_size=4)
    first = encoder_fingerprint(encoder, torch.float32)
    assert first["plugin"] == "simplug:torch_module" and first["distribution"] == "simplug" and first["version"]
    assert encoder_fingerprint(encoder, torch.float16) != first
    with torch.no_grad():
        encoder.module.bias.add_(1e-3)
    assert encoder_fingerprint(encoder, torch.float32)["weights_sha256"] != first["weights_sha256"]
    wider = TorchModuleEncoder(nn.Linear(4, 5), input_size=4)
    assert encoder_fingerprint(wider, torch.float32)["config_sha256"] != first["config_sha256"]


def test_a_run_reusing_the_cache_trains_exactly_like_the_run_that_built_it(tmp_path):
    """The fill must not draw from the global RNG (its DataLoader would, for a seed), or the
    shuffles of a run with a fresh fill and a run reusing the file would differ."""
    from test_cache import head_state

    data = group_points(per_group=8)
    states = []
    for _ in range(2):
        torch.manual_seed(123)
        model, _, _ = fit_cached(tmp_path, data=data, shuffle=True)
        states.append(head_state(model))
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
