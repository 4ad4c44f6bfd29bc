from typing import Any, Dict

from torch import nn

from quaterion import _simplug
from quaterion.distances import Distance


class _LossMeta(type(nn.Module)):
    """``isinstance(x, quaterion.loss.GroupLoss)`` (and PairwiseLoss, SimilarityLoss) also holds for
    simplug's losses of that kind, which some compat names (ArcFaceLoss, CenterLoss, ...) reuse."""

    def __instancecheck__(cls, instance: Any) -> bool:
        if type.__instancecheck__(cls, instance):
            return True
        native = getattr(cls, "_native_kind", None)
        return native is not None and cls.__dict__.get("_native_kind") is native and isinstance(instance, native)


class SimilarityLoss(_simplug.SimilarityLoss, metaclass=_LossMeta):
    """Base of the original's losses: ``distance_metric`` is the class of ``quaterion.distances``."""

    def __init__(self, distance_metric_name: Distance = Distance.COSINE):
        nn.Module.__init__(self)  # simplug's base resolves simplug distances; these use the original's
        self.distance_metric = Distance.get_by_name(distance_metric_name)
        self.distance_metric_name = distance_metric_name

    _native_kind = _simplug.SimilarityLoss

    def get_config_dict(self) -> Dict[str, Any]:
        name = self.distance_metric_name
        return {"distance_metric_name": name.value if isinstance(name, Distance) else name}
