from typing import Tuple

import torch
from torch import LongTensor, Tensor

from quaterion.train.xbm.xbm_config import XbmConfig, XbmDevice


class XbmBuffer:
    """A ring buffer of embeddings and their groups."""

    def __init__(self, config: XbmConfig, embedding_size: int):
        device = config.device
        if device in (None, XbmDevice.AUTO):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = device.value if isinstance(device, XbmDevice) else device
        self._size = config.buffer_size
        self._embeddings = torch.zeros((self._size, embedding_size), device=device)
        self._targets = torch.zeros(self._size, dtype=torch.long, device=device)
        self._pointer = 0
        self._is_full = False

    @property
    def is_full(self) -> bool:
        return self._is_full

    def get(self) -> Tuple[Tensor, LongTensor]:
        end = self._size if self._is_full else self._pointer
        return self._embeddings[:end].clone(), self._targets[:end].clone()

    def queue(self, embeddings: Tensor, targets: LongTensor) -> None:
        embeddings = embeddings.to(self._embeddings.device)
        targets = targets.to(self._targets.device)
        if len(targets) > self._size:
            embeddings, targets = embeddings[-self._size:], targets[-self._size:]
        n = len(targets)
        slots = (self._pointer + torch.arange(n, device=self._targets.device)) % self._size
        self._embeddings[slots] = embeddings.to(self._embeddings.dtype)
        self._targets[slots] = targets
        if self._pointer + n >= self._size:
            self._is_full = True
        self._pointer = (self._pointer + n) % self._size
