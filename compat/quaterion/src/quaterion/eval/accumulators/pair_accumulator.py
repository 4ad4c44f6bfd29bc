from typing import Dict

import torch

from quaterion.eval.accumulators.accumulator import Accumulator


class PairAccumulator(Accumulator):
    """Pairs of later batches are shifted by the number of embeddings accumulated before them."""

    def __init__(self):
        super().__init__()
        self._labels = []
        self._pairs = []
        self._subgroups = []
        self._accumulated_size = 0

    @property
    def state(self) -> Dict[str, torch.Tensor]:
        return {**super().state, "labels": self.labels, "pairs": self.pairs, "subgroups": self.subgroups}

    def update(self, embeddings: torch.Tensor, labels: torch.Tensor, pairs: torch.LongTensor,
               subgroups: torch.Tensor, device=None) -> None:
        device = device if device else embeddings.device
        self._embeddings.append(embeddings.detach().to(device))
        self._labels.append(labels.detach().to(device))
        self._pairs.append(pairs.detach().to(device) + self._accumulated_size)
        self._subgroups.append(subgroups.detach().to(device))
        self._accumulated_size += embeddings.shape[0]

    def reset(self) -> None:
        super().reset()
        self._labels = []
        self._pairs = []
        self._subgroups = []
        self._accumulated_size = 0

    @property
    def labels(self) -> torch.Tensor:
        return torch.cat(self._labels) if self._labels else torch.Tensor()

    @property
    def subgroups(self) -> torch.Tensor:
        return torch.cat(self._subgroups) if self._subgroups else torch.Tensor()

    @property
    def pairs(self) -> torch.LongTensor:
        return torch.cat(self._pairs) if self._pairs else torch.LongTensor()
