"""Cross-batch memory (XBM, Wang et al., 2020): compare each batch with embeddings
remembered from earlier batches, so a group loss sees far more negatives than one batch holds.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from simplug.errors import ConfigError


@dataclass
class XbmConfig:
    """``TrainableModel.configure_xbm()`` returns one of these (or a config's ``"xbm"`` table).

    After ``start_iteration`` training steps the loss becomes
    ``loss(batch) + weight * loss.xbm_loss(batch, memory)``, where the memory holds the last
    ``buffer_size`` embeddings (detached) and group ids of earlier batches. Early embeddings
    drift fast, hence the start delay.
    """

    weight: float = 1.0
    buffer_size: int = 10000
    start_iteration: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not self.weight >= 0:
            raise ConfigError(f"XbmConfig weight must be a number >= 0, got {self.weight!r}")
        for name in ("buffer_size", "start_iteration"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "buffer_size" else 0):
                least = 1 if name == "buffer_size" else 0
                raise ConfigError(f"XbmConfig {name} must be an integer >= {least}, got {value!r}")


class CrossBatchMemory:
    """A ring buffer of detached embeddings and their group ids, on the embeddings' device.

    A batch is written at the *next* training step: the step's memory term keeps views of
    the buffer for its backward pass, so the buffer must not change in place before then
    (writing later costs nothing; copying the buffer every step would).
    """

    def __init__(self, config: XbmConfig):
        self.config = config
        self.embeddings: torch.Tensor | None = None
        self.groups: torch.Tensor | None = None
        self._next = 0  # where the next row is written
        self._filled = 0
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        """Rows written so far (the last step's batch is written at the next step)."""
        return self._filled

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The remembered embeddings and group ids (in storage order, not time order)."""
        if self.embeddings is None:
            raise RuntimeError("the cross-batch memory is empty")
        return self.embeddings[: self._filled], self.groups[: self._filled]

    def enqueue(self, embeddings: torch.Tensor, groups: torch.Tensor) -> None:
        size = self.config.buffer_size
        embeddings, groups = embeddings.detach()[-size:], groups.detach()[-size:]
        if self.embeddings is None or self.embeddings.shape[1] != embeddings.shape[1]:
            self.embeddings = embeddings.new_empty(size, embeddings.shape[1])
            self.groups = groups.new_empty(size)
            self._next = self._filled = 0
        elif self.embeddings.device != embeddings.device:
            self.embeddings, self.groups = self.embeddings.to(embeddings.device), self.groups.to(embeddings.device)
        rows = (torch.arange(len(embeddings), device=embeddings.device) + self._next) % size
        self.embeddings[rows] = embeddings.to(self.embeddings.dtype)
        self.groups[rows] = groups
        self._next = (self._next + len(embeddings)) % size
        self._filled = min(size, self._filled + len(embeddings))

    def loss_term(self, loss: torch.nn.Module, embeddings: torch.Tensor, groups: torch.Tensor, iteration: int):
        """``loss.xbm_loss`` of the batch against the memory of *earlier* batches (none of the
        batch's own rows, so nothing is compared with its own copy), or None before
        ``start_iteration`` or while the memory is empty. The batch is remembered."""
        if self._pending is not None:  # the previous step's backward pass is done by now
            self.enqueue(*self._pending)
        term = None
        if iteration >= self.config.start_iteration and self._filled:
            memory_embeddings, memory_groups = self.contents()
            term = loss.xbm_loss(embeddings, groups, memory_embeddings, memory_groups)
        self._pending = (embeddings.detach(), groups.detach())
        return term
