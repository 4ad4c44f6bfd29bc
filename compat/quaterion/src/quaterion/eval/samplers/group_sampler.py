import random
from typing import Any, Tuple, Union

import torch

from quaterion.dataset.similarity_data_loader import GroupSimilarityDataLoader
from quaterion.eval.accumulators import GroupAccumulator
from quaterion.eval.samplers.base_sampler import BaseSampler
from quaterion.utils.utils import iter_by_batch


class GroupSampler(BaseSampler):
    """Draws ``sample_size`` query objects (``random.sample``) and ranks all objects for each."""

    def __init__(self, sample_size: int = -1, encode_batch_size: int = 16,
                 device: Union[torch.device, str, None] = None, log_progress: bool = True):
        super().__init__(sample_size, device, log_progress)
        self.encode_batch_size = encode_batch_size
        self.accumulator = GroupAccumulator()

    def accumulate(self, model: Any, dataset: Any) -> None:
        for batch in iter_by_batch(dataset, self.encode_batch_size, self.log_progress):
            labels = GroupSimilarityDataLoader.collate_labels(batch)
            embeddings = model.encode([s.obj for s in batch], batch_size=self.encode_batch_size, to_numpy=False)
            self.accumulator.update(embeddings, **labels, device=self.device)
        self.accumulator.set_filled()

    def reset(self) -> None:
        self.accumulator.reset()

    def sample(self, dataset: Any, metric: Any, model: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self.accumulator.filled:
            self.accumulate(model, dataset)
        embeddings = self.accumulator.embeddings
        labels = metric.prepare_labels(self.accumulator.groups)
        total = embeddings.shape[0]
        size = min(self.sample_size, total) if self.sample_size > 0 else total
        chosen = torch.LongTensor(random.sample(range(total), k=size))
        labels = labels[chosen]
        distance_matrix = metric.distance.distance_matrix(embeddings[chosen.to(embeddings.device)], embeddings)
        # each sampled object's distance to itself is set above the maximum. (The original masked
        # entry (i, i) of the i-th *sampled* row instead, so after random.sample's shuffle a query
        # could find itself and count a miss; PairSampler masked correctly. Fixed here.)
        rows = torch.arange(distance_matrix.shape[0], device=distance_matrix.device)
        distance_matrix[rows, chosen.to(distance_matrix.device)] = distance_matrix.max() + 1
        return labels.float(), distance_matrix
