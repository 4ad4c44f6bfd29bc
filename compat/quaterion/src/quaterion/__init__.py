"""quaterion on simplug: the original's training-side names, signatures and numerics.

``Quaterion`` and ``TrainableModel`` load on first use (no Lightning import at ``import quaterion``).
"""
from quaterion._guard import check_no_original as _check

_check("quaterion")

__all__ = ["Quaterion", "TrainableModel"]


def __getattr__(name):
    if name == "Quaterion":
        from quaterion.main import Quaterion

        return Quaterion
    if name == "TrainableModel":
        from quaterion.train.trainable_model import TrainableModel

        return TrainableModel
    raise AttributeError(f"module 'quaterion' has no attribute {name!r}")
