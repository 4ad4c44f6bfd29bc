import random
from typing import Any, Tuple, Union

import torch

from quaterion.dataset.similarity_data_loader import PairsSimilarityDataLoader
from quaterion.eval.accumulators import PairAccumulator
from quaterion.eval.samplers.base_sampler import BaseSampler
from quaterion.utils.utils import iter_by_batch


class PairSampler(BaseSampler):
    """``distinguish=False``: sampled objects are ranked against all objects; ``True``: sampled
    pairs' ``obj_a`` are ranked against every pair's ``obj_b`` only."""

    def __init__(self, sample_size: int = -1, distinguish: bool = False, encode_batch_size: int = 16,
                 device: Union[torch.device, str, None] = None, log_progress: bool = True):
        super().__init__(sample_size, device, log_progress)
        self.encode_batch_size = encode_batch_size
        self.distinguish = distinguish
        self.accumulator = PairAccumulator()

    def accumulate(self, model: Any, dataset: Any) -> None:
        for batch in iter_by_batch(dataset, max(1, self.encode_batch_size // 2), self.log_progress):
            labels = PairsSimilarityDataLoader.collate_labels(batch)
            objects = [s.obj_a for s in batch] + [s.obj_b for s in batch]
            embeddings = model.encode(objects, batch_size=self.encode_batch_size, to_numpy=False)
            self.accumulator.update(embeddings, **labels, device=self.device)
        self.accumulator.set_filled()

    def reset(self) -> None:
        self.accumulator.reset()

    def sample(self, dataset: Any, metric: Any, model: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self.accumulator.filled:
            self.accumulate(model, dataset)
        embeddings = self.accumulator.embeddings
        pairs = self.accumulator.pairs
        labels = metric.prepare_labels(self.accumulator.labels, pairs, self.accumulator.subgroups)
        total = pairs.shape[0] if self.distinguish else embeddings.shape[0]
        size = min(self.sample_size, total) if self.sample_size > 0 else total
        chosen = torch.LongTensor(random.sample(range(total), k=size))
        labels = labels[chosen.to(labels.device)]
        if self.distinguish:
            queries = embeddings[pairs[chosen.to(pairs.device)][:, 0]]
            documents = embeddings[pairs[:, 1]]
            labels = labels[:, pairs[:, 1]]
            distance_matrix = metric.distance.distance_matrix(queries, documents)
        else:
            distance_matrix = metric.distance.distance_matrix(embeddings[chosen.to(embeddings.device)], embeddings)
            rows = torch.arange(size, device=distance_matrix.device)
            distance_matrix[rows, chosen.to(distance_matrix.device)] = distance_matrix.max() + 1
        return labels.float(), distance_matrix
