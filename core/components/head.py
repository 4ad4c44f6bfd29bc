"""EncoderHead base class: the small trainable layer on top of the encoders."""
from __future__ import annotations

from typing import Any

import torch
from simplug.registry.building import positive_int
from torch import nn

#: batch entry holding, for heads that route rows (``reads_batch``), each row's option index
ROUTES_KEY = "__routes__"


class EncoderHead(nn.Module):
    """``forward(x) = transform(dropout(x))``.

    Subclasses implement ``transform`` and ``output_size`` and pass their own constructor
    arguments to ``get_config_dict`` (by extending it), which is what a saved model records
    to rebuild the head.
    """

    def __init__(self, input_embedding_size: int, dropout: float = 0.0):
        super().__init__()
        positive_int(input_embedding_size, "input_embedding_size")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.input_embedding_size = input_embedding_size
        self._dropout_p = float(dropout)
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()

    #: True for a head whose ``forward(x, batch)`` also reads the model's batch (the switch
    #: head reads each row's route there); ``SimilarityModel`` then passes the batch along
    #: and lets ``prepare_records`` add entries to it when collating raw records.
    reads_batch = False

    def prepare_records(self, records: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        """Split raw records into what the encoders take and extra batch entries for this
        head. The default takes the records as they are and adds nothing."""
        return records, {}

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_input(self, input_vectors: torch.Tensor) -> None:
        if input_vectors.dim() != 2 or input_vectors.shape[1] != self.input_embedding_size:
            raise ValueError(
                f"{type(self).__name__} expects embeddings of shape (batch, "
                f"{self.input_embedding_size}), got {tuple(input_vectors.shape)}: the encoders' "
                "embedding_size must equal the head's input_embedding_size"
            )

    def forward(self, input_vectors: torch.Tensor) -> torch.Tensor:
        self.check_input(input_vectors)
        return self.transform(self.dropout(input_vectors))

    def get_config_dict(self) -> dict[str, Any]:
        return {"input_embedding_size": self.input_embedding_size, "dropout": self._dropout_p}
