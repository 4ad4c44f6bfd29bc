from typing import Optional

from quaterion import _simplug
from quaterion.loss._native import OriginalGroupCall
from quaterion.distances import Distance


class CircleLoss(OriginalGroupCall, _simplug.CircleLoss):
    """``CircleLoss(margin=0.25, scale_factor=256, distance_metric_name="cosine")``: simplug's
    implementation, which is defined on cosine similarities only."""

    def __init__(self, margin: Optional[float] = 0.25, scale_factor: Optional[float] = 256,
                 distance_metric_name: Optional[Distance] = Distance.COSINE):
        name = distance_metric_name.value if isinstance(distance_metric_name, Distance) else distance_metric_name
        if name != "cosine":
            raise ValueError(f"CircleLoss works on cosine similarities; got distance_metric_name={name!r}")
        super().__init__(margin=margin, scale_factor=scale_factor)
