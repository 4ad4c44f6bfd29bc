from dataclasses import dataclass
from enum import Enum
from typing import Optional


class XbmDevice(str, Enum):
    CPU = "cpu"
    CUDA = "cuda"
    AUTO = "auto"  #: CUDA when available, else CPU


@dataclass
class XbmConfig:
    """Cross-batch memory: a ring buffer of the last ``buffer_size`` embeddings; from training step
    ``start_iteration`` on, ``weight * loss.xbm_loss(batch, buffer)`` is added to the loss."""

    weight: Optional[float] = 1.0
    buffer_size: Optional[int] = 10000
    start_iteration: Optional[int] = 1000
    device: Optional[XbmDevice] = XbmDevice.AUTO
