"""Data loaders that turn similarity samples into model inputs and loss targets."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from simplug.errors import DataError
from simplug.samples import SimilarityGroupSample, SimilarityPairSample


class _CollateWithFeatures:
    """Picklable collate: the loader's targets plus the model's features."""

    def __init__(self, pre_collate: Callable, model_collate: Callable):
        self.pre_collate = pre_collate
        self.model_collate = model_collate

    def __call__(self, batch: list[Any]) -> tuple[Any, dict[str, torch.Tensor]]:
        records, targets = self.pre_collate(batch)
        return self.model_collate(records), targets


class SimilarityDataLoader(DataLoader):
    """Base of the pair and group loaders. Until a model sets its collate, a batch is
    ``(raw_objects, targets)``."""

    sample_type: type = object
    target_kind = ""
    other_loader = ""

    def __init__(self, dataset: Dataset | Sequence[Any], **kwargs: Any):
        if "collate_fn" in kwargs:
            raise DataError(
                f"{type(self).__name__} builds its own batches; give the encoder a collate function instead"
            )
        if hasattr(dataset, "__len__"):
            if len(dataset) == 0:
                raise DataError(f"{type(self).__name__} got an empty data set; give it at least one {self.sample_type.__name__}")
            self._check(dataset[0], "item 0 of the data set")
        super().__init__(dataset, collate_fn=self.pre_collate, **kwargs)

    def _check(self, sample: Any, where: str) -> None:
        if not isinstance(sample, self.sample_type):
            hint = ""
            if isinstance(sample, (SimilarityPairSample, SimilarityGroupSample)):
                hint = f"; for {type(sample).__name__} data use {self.other_loader}"
            raise DataError(
                f"{type(self).__name__} needs {self.sample_type.__name__} items, but {where} "
                f"is a {type(sample).__name__}{hint}"
            )

    def _check_batch(self, batch: list[Any]) -> None:
        for i, sample in enumerate(batch):
            self._check(sample, f"item {i} of a batch")

    @property
    def full_dataset(self) -> Any:
        return self.dataset

    def set_model_collate(self, model_collate: Callable[[list[Any]], Any]) -> None:
        self.collate_fn = _CollateWithFeatures(self.pre_collate, model_collate)

    def pre_collate(self, batch: list[Any]) -> tuple[list[Any], dict[str, torch.Tensor]]:
        raise NotImplementedError


class PairsSimilarityDataLoader(SimilarityDataLoader):
    """Batches of N pairs become 2N objects (all ``obj_a`` then all ``obj_b``) and targets
    ``{"pairs": (N, 2), "labels": (N,), "subgroups": (2N,)}``."""

    sample_type = SimilarityPairSample
    target_kind = "pairs"
    other_loader = "GroupSimilarityDataLoader"

    def pre_collate(self, batch: list[Any]) -> tuple[list[Any], dict[str, torch.Tensor]]:
        self._check_batch(batch)
        n = len(batch)
        records = [s.obj_a for s in batch] + [s.obj_b for s in batch]
        pairs = torch.stack([torch.arange(n), torch.arange(n, 2 * n)], dim=1)
        labels = torch.tensor([float(s.score) for s in batch])
        subgroups = torch.tensor([int(s.subgroup) for s in batch] * 2)
        return records, {"pairs": pairs, "labels": labels, "subgroups": subgroups}


class GroupSimilarityDataLoader(SimilarityDataLoader):
    """Batches of objects with targets ``{"groups": (N,)}``."""

    sample_type = SimilarityGroupSample
    target_kind = "groups"
    other_loader = "PairsSimilarityDataLoader"

    def pre_collate(self, batch: list[Any]) -> tuple[list[Any], dict[str, torch.Tensor]]:
        self._check_batch(batch)
        records = [s.obj for s in batch]
        groups = torch.tensor([int(s.group) for s in batch], dtype=torch.long)
        return records, {"groups": groups}
