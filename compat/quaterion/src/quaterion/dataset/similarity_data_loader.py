"""Loaders of similarity samples: a batch is ``(ids, objects, labels)`` until the trainable model
installs its collator, then ``(model input, labels)``."""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from quaterion.dataset.indexing_dataset import IndexingDataset, IndexingIterableDataset
from quaterion.dataset.similarity_samples import SimilarityGroupSample, SimilarityPairSample


class SimilarityDataLoader(DataLoader):
    def __init__(self, dataset: Dataset, **kwargs):
        if "collate_fn" not in kwargs:
            kwargs["collate_fn"] = self.__class__.pre_collate_fn
        self._original_dataset = dataset
        self._original_params = dict(kwargs)
        if isinstance(dataset, IterableDataset):
            self._indexing_dataset_layer = IndexingIterableDataset(dataset)
        else:
            self._indexing_dataset_layer = IndexingDataset(dataset)
        super().__init__(self._indexing_dataset_layer, **kwargs)

    @property
    def original_params(self) -> Dict[str, Any]:
        return self._original_params

    @property
    def full_cache_used(self) -> bool:
        """The original could skip reading samples when every encoder was cached; this drop-in
        always reads them (the cache still spares the encoders), so this is False."""
        return False

    def set_skip_read(self, skip: bool) -> None:
        """Accepted for the original's interface; samples are always read."""
        self._skip_read = bool(skip)

    def set_label_cache_mode(self, mode) -> None:
        """Accepted for the original's interface (``LabelCacheMode``); it has no effect."""
        self._label_cache_mode = mode

    def save_label_cache(self, path: str) -> None:
        """Nothing to save: the drop-in keeps no label cache."""

    def load_label_cache(self, path: str) -> None:
        """Nothing to load: the drop-in keeps no label cache."""

    def set_salt(self, salt: int) -> None:
        """Shift this loader's sample ids, so that two loaders' ids never collide in a cache."""
        self._indexing_dataset_layer.set_salt(salt)

    @classmethod
    def pre_collate_fn(cls, batch: List[Tuple[int, Any]]):
        ids = [sample_id for sample_id, _ in batch]
        samples = [sample for _, sample in batch]
        labels = cls.collate_labels(samples)
        features, feature_ids = cls.flatten_objects(batch=samples, hash_ids=ids)
        return feature_ids, features, labels

    @classmethod
    def collate_labels(cls, batch: List[Any]) -> Dict[str, torch.Tensor]:
        raise NotImplementedError()

    @classmethod
    def flatten_objects(cls, batch: List[Any], hash_ids: List[int]) -> Tuple[List[Any], List[int]]:
        raise NotImplementedError()


class PairsSimilarityDataLoader(SimilarityDataLoader):
    """N pairs become 2N objects (all obj_a, then all obj_b); labels
    ``{"pairs": [[i, i + N]], "labels": scores, "subgroups": subgroups twice}``."""

    def __init__(self, dataset: Dataset, **kwargs):
        super().__init__(dataset, **kwargs)

    @classmethod
    def collate_labels(cls, batch: List[SimilarityPairSample]) -> Dict[str, torch.Tensor]:
        n = len(batch)
        return {
            "pairs": torch.LongTensor([[i, i + n] for i in range(n)]),
            "labels": torch.Tensor([sample.score for sample in batch]),
            "subgroups": torch.Tensor([sample.subgroup for sample in batch] * 2),
        }

    @classmethod
    def flatten_objects(cls, batch: List[SimilarityPairSample], hash_ids: List[int]) -> Tuple[List[Any], List[int]]:
        features = [s.obj_a for s in batch] + [s.obj_b for s in batch]
        ids = list(hash_ids) + [i + 1 for i in hash_ids]
        return features, ids


class GroupSimilarityDataLoader(SimilarityDataLoader):
    """Labels ``{"groups": LongTensor}``."""

    def __init__(self, dataset: Dataset, **kwargs):
        super().__init__(dataset, **kwargs)

    @classmethod
    def collate_labels(cls, batch: List[SimilarityGroupSample]) -> Dict[str, torch.Tensor]:
        return {"groups": torch.LongTensor([sample.group for sample in batch])}

    @classmethod
    def flatten_objects(cls, batch: List[SimilarityGroupSample], hash_ids: List[int]) -> Tuple[List[Any], List[int]]:
        return [sample.obj for sample in batch], list(hash_ids)
