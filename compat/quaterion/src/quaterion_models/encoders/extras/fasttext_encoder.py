"""FasttextEncoder: gensim word vectors aggregated per record (needs ``pip install gensim``)."""
from __future__ import annotations

import json
import os
from typing import Any, List, Optional

import numpy as np
import torch
from torch import Tensor

from quaterion_models.encoders.encoder import Encoder
from quaterion_models.types import CollateFnType

AGGREGATIONS = ("min", "max", "avg")


def _gensim():
    try:
        import gensim
    except ImportError as exc:
        raise ImportError("FasttextEncoder needs gensim: pip install gensim") from exc
    return gensim


def load_fasttext_model(path: str):
    """Word vectors from a gensim FastText model, a Facebook fastText binary or saved KeyedVectors."""
    gensim = _gensim()
    from gensim.models import FastText

    try:
        return FastText.load(path).wv
    except Exception:
        try:
            return gensim.models.fasttext.load_facebook_vectors(path)
        except Exception:
            return gensim.models.KeyedVectors.load(path)


class FasttextEncoder(Encoder):
    """Frozen; ``embedding_size = vector_size * len(aggregations)``. Subclasses implement the
    classmethod ``get_tokens(batch) -> list of token lists`` (the collate function)."""

    aggregation_options = list(AGGREGATIONS)

    def __init__(self, model_path: str, on_disk: bool, aggregations: Optional[List[str]] = None):
        super().__init__()
        aggregations = ["avg"] if aggregations is None else list(aggregations)
        unknown = [a for a in aggregations if a not in AGGREGATIONS]
        if unknown:
            raise ValueError(f"unknown aggregations {unknown}; choose from {list(AGGREGATIONS)}")
        self._device_tensor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
        self.aggregations = aggregations
        self.on_disk = on_disk
        self.model = _gensim().models.KeyedVectors.load(model_path, mmap="r" if on_disk else None)

    @property
    def trainable(self) -> bool:
        return False

    @property
    def embedding_size(self) -> int:
        return self.model.vector_size * len(self.aggregations)

    @classmethod
    def get_tokens(cls, batch: List[Any]) -> List[List[str]]:
        raise NotImplementedError()

    def get_collate_fn(self) -> CollateFnType:
        return self.__class__.get_tokens

    @classmethod
    def aggregate(cls, embeddings: Tensor, operation: str) -> Tensor:
        if operation == "avg":
            return embeddings.mean(dim=0)
        if operation == "max":
            return embeddings.max(dim=0).values
        if operation == "min":
            return embeddings.min(dim=0).values
        raise RuntimeError(f"Unknown operation: {operation}")

    def forward(self, batch: List[List[str]]) -> Tensor:
        rows = []
        for tokens in batch:
            vectors = np.stack([self.model.get_vector(t) for t in tokens]) if tokens else \
                np.zeros((1, self.model.vector_size), dtype=np.float32)
            tensor = torch.as_tensor(vectors, device=self._device_tensor.device)
            rows.append(torch.cat([self.aggregate(tensor, op) for op in self.aggregations]))
        return torch.stack(rows)

    def save(self, output_path: str) -> None:
        self.model.save(os.path.join(output_path, "fasttext.model"),
                        separately=["vectors_ngrams", "vectors", "vectors_vocab"])
        with open(os.path.join(output_path, "config.json"), "w") as fh:
            json.dump({"on_disk": self.on_disk, "aggregations": self.aggregations}, fh, indent=2)

    @classmethod
    def load(cls, input_path: str) -> Encoder:
        with open(os.path.join(input_path, "config.json")) as fh:
            config = json.load(fh)
        return cls(model_path=os.path.join(input_path, "fasttext.model"), **config)
