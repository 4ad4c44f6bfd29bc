"""The progress bar of the original's trainer defaults, here Lightning's TQDM bar."""
from typing import Any

from pytorch_lightning.callbacks import TQDMProgressBar


class QuaterionProgressBar(TQDMProgressBar):
    """Accepts the original's (rich) arguments, e.g. ``console_kwargs``, and ignores them."""

    def __init__(self, *args: Any, console_kwargs: Any = None, **kwargs: Any):
        refresh = kwargs.pop("refresh_rate", 1)
        super().__init__(refresh_rate=refresh)
