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
        end = self._pointer + n
        if end > self._size:
            # the original's wrap-around: the batch's last rows fill the tail from the pointer on,
            # its first ``excess`` rows the head (which rows survive later writes depends on this)
            excess = end - self._size
            self._embeddings[self._pointer:] = embeddings[excess:].to(self._embeddings.dtype)
            self._targets[self._pointer:] = targets[excess:]
            self._embeddings[:excess] = embeddings[:excess].to(self._embeddings.dtype)
            self._targets[:excess] = targets[:excess]
            self._pointer = excess
        else:
            self._embeddings[self._pointer:end] = embeddings.to(self._embeddings.dtype)
            self._targets[self._pointer:end] = targets
            self._pointer = end % self._size
        if end >= self._size:
            self._is_full = True
