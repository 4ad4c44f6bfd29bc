"""The original's label-cache modes. The drop-in always reads samples (the cache spares the
encoders, not the data set), so the modes are accepted and have no effect."""
from enum import Enum


class LabelCacheMode(str, Enum):
    transparent = "transparent"
    learn = "learn"
    read = "read"
