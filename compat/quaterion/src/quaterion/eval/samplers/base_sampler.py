from typing import Sized, Tuple, Union

import torch
from torch import Tensor


class BaseSampler:
    """Encodes a data set with a model and hands a metric ``(labels, distance_matrix)`` of a
    sample of it. ``sample_size=-1``: all of it. ``device``: where embeddings are kept."""

    def __init__(self, sample_size: int = -1, device: Union[torch.device, str, None] = None,
                 log_progress: bool = True):
        self.sample_size = sample_size
        self.device = device
        self.log_progress = log_progress

    def sample(self, dataset: Sized, metric, model) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError()

    def reset(self) -> None:
        pass
