from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from simplug.components.loss import ProxyGroupLoss
from torch import nn


class SoftmaxLoss(ProxyGroupLoss):
    """Classification of each embedding into its group: cross entropy over
    ``embeddings @ weight.T / temperature`` with a learned ``weight`` of shape
    ``(num_groups, embedding_size)``. ``normalize=True`` normalises both embeddings and
    weights first (logits are cosines / temperature: the normalised softmax loss).
    """

    def __init__(self, embedding_size: int, num_groups: int, temperature: float = 0.05, normalize: bool = False):
        super().__init__(embedding_size, num_groups)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.temperature = float(temperature)
        self.normalize = bool(normalize)
        self.weight = nn.Parameter(torch.empty(num_groups, embedding_size))
        # small logits at the start, whatever the temperature
        nn.init.normal_(self.weight, std=0.01)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "temperature": self.temperature, "normalize": self.normalize}

    def compute(self, embeddings: torch.Tensor, groups: torch.LongTensor) -> torch.Tensor:
        weight = self.weight.to(embeddings.dtype)
        if self.normalize:
            embeddings, weight = F.normalize(embeddings, dim=1), F.normalize(weight, dim=1)
        return F.cross_entropy(embeddings @ weight.T / self.temperature, groups)
