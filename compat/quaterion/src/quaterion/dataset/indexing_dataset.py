"""Data set layers that give every sample a stable integer id (the cache key of its objects)."""
from __future__ import annotations

from typing import Any, Iterator, Tuple

from torch.utils.data import Dataset, IterableDataset

#: ids of one loader differ from another's by the salt in the high bits
SALT_SHIFT = 40


def sample_id(salt: int, index: int) -> int:
    """Even ids: obj_a (and group samples) use the id, obj_b uses id + 1."""
    return (salt << SALT_SHIFT) + 2 * index


class IndexingDataset(Dataset):
    def __init__(self, dataset: Dataset, salt: int = 0):
        self._dataset = dataset
        self._salt = salt

    def set_salt(self, salt: int) -> None:
        self._salt = salt

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, index: int) -> Tuple[int, Any]:
        return sample_id(self._salt, index), self._dataset[index]


class IndexingIterableDataset(IterableDataset):
    def __init__(self, dataset: IterableDataset, salt: int = 0):
        self._dataset = dataset
        self._salt = salt

    def set_salt(self, salt: int) -> None:
        self._salt = salt

    def __iter__(self) -> Iterator[Tuple[int, Any]]:
        for index, item in enumerate(self._dataset):
            yield sample_id(self._salt, index), item
