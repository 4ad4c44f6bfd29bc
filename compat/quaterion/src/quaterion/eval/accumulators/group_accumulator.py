from typing import Dict

import torch

from quaterion.eval.accumulators.accumulator import Accumulator


class GroupAccumulator(Accumulator):
    def __init__(self):
        super().__init__()
        self._groups = []

    @property
    def state(self) -> Dict[str, torch.Tensor]:
        return {**super().state, "groups": self.groups}

    def update(self, embeddings: torch.Tensor, groups: torch.Tensor, device=None) -> None:
        device = device if device is not None else embeddings.device
        self._embeddings.append(embeddings.detach().to(device))
        self._groups.append(groups.detach().to(device))

    def reset(self) -> None:
        super().reset()
        self._groups = []

    @property
    def groups(self) -> torch.Tensor:
        return torch.cat(self._groups) if self._groups else torch.LongTensor()
