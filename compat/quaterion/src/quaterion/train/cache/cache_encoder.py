from __future__ import annotations

from enum import Enum
from typing import Any, Hashable, List, Tuple, Union

from torch import Tensor

from quaterion_models.encoders import Encoder


class CacheMode(str, Enum):
    FILL = "fill"
    TRAIN = "train"


class CacheEncoder(Encoder):
    """Stands in for a frozen encoder during training: ``forward`` takes a list of cache keys."""

    def __init__(self, encoder: Encoder):
        if encoder.trainable:
            raise ValueError("Trainable encoder can't be cached")
        super().__init__()
        self._encoder = encoder

    @property
    def wrapped_encoder(self) -> Encoder:
        return self._encoder

    @property
    def trainable(self) -> bool:
        return False

    @property
    def embedding_size(self) -> int:
        return self._encoder.embedding_size

    def get_meta_extractor(self):
        return self._encoder.get_meta_extractor()

    def cache_collate(self, batch: Union[Tuple[List[Hashable], List[Any]], List[Hashable]]):
        """Keys pass through; ``(keys, objects)`` gives ``(keys, the encoder's collated objects)``."""
        if isinstance(batch, tuple):
            keys, objects = batch
            return keys, self._encoder.get_collate_fn()(objects)
        return batch

    def get_collate_fn(self):
        return self.cache_collate

    def forward(self, batch: Any) -> Tensor:
        raise NotImplementedError()

    def save(self, output_path: str) -> None:
        self._encoder.save(output_path)

    @classmethod
    def load(cls, input_path: str) -> Encoder:
        raise ValueError("Cached encoder does not support loading")

    def is_filled(self) -> bool:
        raise NotImplementedError()

    def fill_cache(self, keys: List[Hashable], data: Any, meta: List[Any]) -> None:
        raise NotImplementedError()

    def finish_fill(self) -> None:
        raise NotImplementedError()

    def reset_cache(self) -> None:
        raise NotImplementedError()
