"""Encoder with the original's interface; also a simplug ``Encoder`` (usable by simplug's model)."""
from __future__ import annotations

from typing import Any, List

from torch import Tensor
from torch.utils.data.dataloader import default_collate

from quaterion import _simplug
from quaterion_models.types import CollateFnType, MetaExtractorFnType, TensorInterchange


class Encoder(_simplug.Encoder):
    """Subclasses define ``trainable``, ``embedding_size``, ``forward`` and, to be saved,
    ``save(output_path)`` and the classmethod ``load(input_path)``."""

    def __init__(self):
        super().__init__()

    def disable_gradients_if_required(self) -> None:
        if not self.trainable:
            for param in self.parameters():
                param.requires_grad = False

    @property
    def trainable(self) -> bool:
        raise NotImplementedError()

    @property
    def embedding_size(self) -> int:
        raise NotImplementedError()

    def get_collate_fn(self) -> CollateFnType:
        return default_collate

    @classmethod
    def extract_meta(cls, batch: List[Any]) -> List[dict]:
        return [{} for _ in batch]

    def get_meta_extractor(self) -> MetaExtractorFnType:
        return self.extract_meta

    def forward(self, batch: TensorInterchange) -> Tensor:
        raise NotImplementedError()

    def save(self, output_path: str) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} does not implement save(output_path); an encoder saved with a "
            "model must write its state there (and implement the classmethod load(input_path))"
        )

    @classmethod
    def load(cls, input_path: str) -> "Encoder":
        raise NotImplementedError(f"{cls.__name__} does not implement the classmethod load(input_path)")
