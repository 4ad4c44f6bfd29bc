"""quaterion_models on simplug: the original's serving-side names (encoders, heads, SimilarityModel)."""
from quaterion._guard import check_no_original as _check

_check("quaterion_models")

from quaterion_models.model import MetricModel, SimilarityModel  # noqa: E402

__all__ = ["SimilarityModel", "MetricModel"]
