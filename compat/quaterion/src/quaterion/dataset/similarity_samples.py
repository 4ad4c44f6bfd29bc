"""The sample types are simplug's (same fields and defaults as the original's)."""
from quaterion import _simplug

SimilarityPairSample = _simplug.SimilarityPairSample
SimilarityGroupSample = _simplug.SimilarityGroupSample

__all__ = ["SimilarityPairSample", "SimilarityGroupSample"]
