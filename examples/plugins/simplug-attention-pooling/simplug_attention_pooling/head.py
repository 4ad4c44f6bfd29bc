from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from simplug.errors import ConfigError
from simplug.components.head import EncoderHead


class AttentionPoolingHead(EncoderHead):
    """Self-attention pooling over the embeddings of several encoders.

    A simplug model with several encoders hands the head their outputs concatenated, in the
    sorted order of the encoders' keys; ``encoder_sizes`` gives each one's size in that order.
    Each encoder's embedding becomes one token of ``hidden_size`` (its own projection plus a
    learned vector saying which encoder it came from). One transformer block lets the tokens
    attend to each other, then a learned query weighs them into one vector (``pooling_weights``
    shows how much each encoder counts for each input), projected to ``output_size``.

    Unlike concatenation, the head can lean on the encoder that is informative for a given
    input, and the output size does not grow with the number of encoders.
    """

    def __init__(
        self,
        input_embedding_size: int,
        encoder_sizes: Sequence[int],
        hidden_size: int = 64,
        output_size: int | None = None,
        num_heads: int = 4,
        normalize: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__(input_embedding_size, dropout=dropout)
        sizes = list(encoder_sizes) if isinstance(encoder_sizes, (list, tuple)) else None
        if not sizes or not all(isinstance(s, int) and s > 0 for s in sizes):
            raise ConfigError(
                f"encoder_sizes must be a list of positive ints (each encoder's embedding_size, in the "
                f"sorted order of the encoder keys), got {encoder_sizes!r}"
            )
        if sum(sizes) != input_embedding_size:
            raise ConfigError(
                f"encoder_sizes {sizes} add up to {sum(sizes)} but the encoders produce "
                f"{input_embedding_size} values; list every encoder's embedding_size in sorted key order"
            )
        if not isinstance(hidden_size, int) or not isinstance(num_heads, int) or num_heads < 1 or hidden_size % num_heads:
            raise ConfigError(
                f"hidden_size ({hidden_size!r}) must be a positive multiple of num_heads ({num_heads!r})"
            )
        self.encoder_sizes = sizes
        self.hidden_size = hidden_size
        self._output_size = hidden_size if output_size is None else int(output_size)
        self._output_size_arg = output_size
        self.num_heads = num_heads
        self.normalize = bool(normalize)

        self.projections = nn.ModuleList(nn.Linear(size, hidden_size) for size in sizes)
        self.encoder_embedding = nn.Parameter(torch.randn(len(sizes), hidden_size) * 0.02)
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_size, 2 * hidden_size), nn.GELU(), nn.Linear(2 * hidden_size, hidden_size)
        )
        self.feed_forward_norm = nn.LayerNorm(hidden_size)
        self.pool_query = nn.Parameter(torch.randn(hidden_size) / math.sqrt(hidden_size))
        self.output = nn.Linear(hidden_size, self._output_size)

    @property
    def output_size(self) -> int:
        return self._output_size

    def _tokens(self, input_vectors: torch.Tensor) -> torch.Tensor:
        parts = input_vectors.split(self.encoder_sizes, dim=1)
        tokens = torch.stack([proj(part) for proj, part in zip(self.projections, parts)], dim=1)
        tokens = tokens + self.encoder_embedding
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        tokens = self.attention_norm(tokens + attended)
        return self.feed_forward_norm(tokens + self.feed_forward(tokens))

    def _pool(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax(tokens @ self.pool_query / math.sqrt(self.hidden_size), dim=1)
        return (weights.unsqueeze(-1) * tokens).sum(dim=1), weights

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        pooled, _ = self._pool(self._tokens(input_vectors))
        out = self.output(pooled)
        return F.normalize(out, dim=-1) if self.normalize else out

    @torch.no_grad()
    def pooling_weights(self, input_vectors: torch.Tensor) -> torch.Tensor:
        """``(batch, n_encoders)``: how much each encoder's token counts in each output."""
        return self._pool(self._tokens(input_vectors))[1]

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "encoder_sizes": list(self.encoder_sizes),
            "hidden_size": self.hidden_size,
            "output_size": self._output_size_arg,
            "num_heads": self.num_heads,
            "normalize": self.normalize,
        }
