from typing import Dict

import torch


class Accumulator:
    """Collects embeddings (and, in subclasses, their targets) batch by batch."""

    def __init__(self):
        self._embeddings = []
        self._filled = False

    @property
    def state(self) -> Dict[str, torch.Tensor]:
        return {"embeddings": self.embeddings}

    @property
    def filled(self) -> bool:
        return self._filled

    def set_filled(self) -> None:
        self._filled = True

    @property
    def embeddings(self) -> torch.Tensor:
        return torch.cat(self._embeddings) if self._embeddings else torch.Tensor()

    def update(self, **kwargs) -> None:
        raise NotImplementedError()

    def reset(self) -> None:
        self._embeddings = []
        self._filled = False
