from quaterion.dataset.similarity_data_loader import (
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
    SimilarityDataLoader,
)
from quaterion.dataset.similarity_dataset import SimilarityGroupDataset
from quaterion.dataset.similarity_samples import SimilarityGroupSample, SimilarityPairSample

__all__ = [
    "GroupSimilarityDataLoader", "PairsSimilarityDataLoader", "SimilarityDataLoader",
    "SimilarityGroupDataset", "SimilarityGroupSample", "SimilarityPairSample",
]
