from typing import Sized

from torch.utils.data import Dataset

from quaterion.dataset.similarity_samples import SimilarityGroupSample


class SimilarityGroupDataset(Dataset):
    """Wraps a data set of ``(record, label)`` items; each item becomes
    ``SimilarityGroupSample(obj=record, group=label)`` (the label is used as the group as is)."""

    def __init__(self, dataset: Dataset):
        self._dataset = dataset

    def __len__(self) -> int:
        if isinstance(self._dataset, Sized):
            return len(self._dataset)
        raise NotImplementedError("the wrapped data set has no length")

    def __getitem__(self, index) -> SimilarityGroupSample:
        record, label = self._dataset[index]
        return SimilarityGroupSample(obj=record, group=label)
