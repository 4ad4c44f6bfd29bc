"""Models with a head per side (two-tower) or on the query side only."""
from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_python
from data import group_points, pair_points
from simplug import GroupSimilarityDataLoader, PairsSimilarityDataLoader, Quaterion, TrainableModel
from simplug.errors import ConfigError
from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.serving import SimilarityModel

FIT = dict(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
TWO_TOWER = {"query": {"name": "skip_connection", "n_layers": 2}, "document": {"name": "gated"}}
QUERY_ONLY = {"query": {"name": "skip_connection"}, "document": "empty"}


def build(heads=TWO_TOWER, loss="multiple_negatives_ranking") -> TrainableModel:
    torch.manual_seed(0)
    encoder = TorchModuleEncoder(nn.Sequential(nn.Linear(12, 10), nn.Tanh()), input_size=12)
    model = TrainableModel.from_config({"encoder": encoder, "heads": heads, "loss": loss, "optimizer": {"name": "adam", "lr": 0.05}})
    with torch.no_grad():  # heads away from their identity-like start, so the sides differ
        for p in model.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.2)
    return model


def test_each_side_has_its_own_head_and_a_side_is_required():
    model = build().model
    inputs = [torch.randn(12) for _ in range(5)]
    query, document = model.encode(inputs, side="query"), model.encode(inputs, side="document")
    assert query.shape == document.shape == (5, 10)
    assert not np.allclose(query, document)
    with pytest.raises(ValueError, match="side='query'"):
        model.encode(inputs)
    with pytest.raises(ValueError, match="unknown side 'answer'"):
        model.encode(inputs, side="answer")


def test_query_only_model_leaves_documents_to_the_encoder():
    model = build(QUERY_ONLY).model
    inputs = [torch.randn(12) for _ in range(4)]
    raw = model.encoder_embeddings({"default": torch.stack(inputs)})
    assert np.allclose(model.encode(inputs, side="document"), raw.numpy())
    assert not np.allclose(model.encode(inputs, side="query"), raw.numpy())


@pytest.mark.filterwarnings(r"ignore:You are trying to `self.log\(\)`")
def test_training_applies_the_query_head_to_obj_a_and_the_document_head_to_obj_b():
    trainable = build()
    data = pair_points(n_pairs=16)
    loader = PairsSimilarityDataLoader(data, batch_size=8)
    trainable.setup_dataloader(loader)
    seen = []
    trainable.process_results = lambda embeddings, **kw: seen.append(embeddings.detach())
    trainable.eval()
    trainable.validation_step(next(iter(loader)), 0)
    n = 8
    expected_query = trainable.model.encode([s.obj_a for s in data[:n]], side="query")
    expected_document = trainable.model.encode([s.obj_b for s in data[:n]], side="document")
    np.testing.assert_allclose(seen[0][:n].numpy(), expected_query, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(seen[0][n:].numpy(), expected_document, rtol=1e-5, atol=1e-6)


def test_both_heads_learn_and_the_saved_model_encodes_the_same_in_a_fresh_process(tmp_path):
    trainable = build()
    before = {k: v.clone() for k, v in trainable.model.state_dict().items()}
    Quaterion.fit(trainable, train_dataloader=PairsSimilarityDataLoader(pair_points(), batch_size=10), **FIT)
    after = trainable.model.state_dict()
    for side in ("query", "document"):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(f"side_heads.{side}."))
    path = str(tmp_path / "two_tower")
    trainable.save_servable(path)
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    assert manifest["sides"] == ["query", "document"]
    roles = {c["role"]: c for c in manifest["components"]}
    assert {"head:query", "head:document"} <= set(roles) and "head" not in roles
    assert roles["head:query"]["name"] == "skip_connection" and roles["head:document"]["name"] == "gated"

    inputs = [torch.randn(12, generator=torch.Generator().manual_seed(i)).tolist() for i in range(6)]
    expected = {side: trainable.model.encode(inputs, side=side) for side in ("query", "document")}
    code = textwrap.dedent(f"""
        import json, sys
        from simplug.serving import SimilarityModel
        model = SimilarityModel.load({path!r})
        inputs = {json.dumps(inputs)}
        out = {{side: model.encode(inputs, side=side).tolist() for side in ("query", "document")}}
        assert "pytorch_lightning" not in sys.modules
        print(json.dumps(out))
    """)
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout.strip().splitlines()[-1])
    for side in ("query", "document"):
        np.testing.assert_allclose(np.array(served[side]), expected[side], rtol=1e-6, atol=1e-7)


def test_shared_head_models_are_unchanged_and_accept_a_side(tmp_path):
    torch.manual_seed(0)
    encoder = TorchModuleEncoder(nn.Linear(12, 10), input_size=12)
    model = TrainableModel.from_config({"encoder": encoder, "head": "skip_connection", "loss": "triplet"}).model
    inputs = [torch.randn(12) for _ in range(3)]
    assert model.sides == ()
    assert np.array_equal(model.encode(inputs), model.encode(inputs, side="document"))
    path = str(tmp_path / "shared")
    model.save(path)
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    assert manifest["sides"] == [] and [c["role"] for c in manifest["components"]][-1] == "head"
    assert np.array_equal(SimilarityModel.load(path).encode(inputs), model.encode(inputs))


@pytest.mark.parametrize(
    "config, message",
    [
        ({"heads": {"query": "skip_connection"}}, "exactly the sides 'query' and 'document'"),
        ({"heads": QUERY_ONLY, "head": "empty"}, "either 'head'"),
        ({"heads": {"query": {"name": "stacked_projection", "output_sizes": [4]}, "document": "empty"}}, "equal output sizes"),
    ],
)
def test_bad_head_configs_are_named(config, message):
    encoder = TorchModuleEncoder(nn.Linear(12, 10), input_size=12)
    with pytest.raises(ConfigError, match=message):
        TrainableModel.from_config({"encoder": encoder, "loss": "multiple_negatives_ranking", **config})


def test_per_side_heads_refuse_group_data():
    model = build(QUERY_ONLY, loss="triplet")
    with pytest.raises(ConfigError, match="trains on pairs"):
        model.setup_dataloader(GroupSimilarityDataLoader(group_points(), batch_size=8))


def test_cli_encode_and_held_out_scoring_use_the_sides(tmp_path):
    from conftest import run_cli
    from simplug.evaluation.heldout import HeldOutScorer
    from simplug.evaluation.retrieval import RetrievalTask, evaluate_retrieval

    model = build().model
    path = str(tmp_path / "model")
    model.save(path)
    inputs = [[float(i + j) / 10 for j in range(12)] for i in range(4)]
    (tmp_path / "in.json").write_text(json.dumps(inputs))
    out = str(tmp_path / "query.npy")
    result = run_cli("encode", path, str(tmp_path / "in.json"), "-o", out, "--side", "query")
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(out), model.encode(inputs, side="query"), rtol=1e-6, atol=1e-7)
    refused = run_cli("encode", path, str(tmp_path / "in.json"), "-o", out)
    assert refused.returncode != 0 and "side='query'" in refused.stderr + refused.stdout

    pairs = pair_points(n_pairs=12)
    task = RetrievalTask.from_pairs(pairs)
    frozen_scores = HeldOutScorer(task).score(model)  # frozen encoder: heads applied to stored outputs
    assert frozen_scores == evaluate_retrieval(model, task)
    queries = torch.as_tensor(model.encode(task.queries, side="query"))
    documents = torch.as_tensor(model.encode(task.candidates, side="document"))
    nearest = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(documents, dim=1).T
    assert frozen_scores["retrieval_precision@1"] == pytest.approx((nearest.argmax(1) == torch.arange(12)).float().mean().item())


def test_http_server_encodes_each_side_and_requires_one(tmp_path):
    from test_serving_http import post, start, stop

    model = build().model
    path = str(tmp_path / "model")
    model.save(path)
    served = SimilarityModel.load(path)
    server = start(served, max_batch=16, max_body_bytes=65536)
    try:
        inputs = [[float(i * j) / 20 for j in range(12)] for i in range(3)]
        for side in ("query", "document"):
            status, body = post(server, {"inputs": inputs, "side": side})
            assert status == 200, body
            np.testing.assert_allclose(np.array(body["embeddings"]), model.encode(inputs, side=side), rtol=1e-5, atol=1e-6)
        status, body = post(server, inputs)
        assert status == 400 and '"side": "query"' in body["error"]
        status, body = post(server, {"inputs": inputs, "side": "answer"})
        assert status == 400 and "'side' is 'answer'" in body["error"]
    finally:
        stop(server)
