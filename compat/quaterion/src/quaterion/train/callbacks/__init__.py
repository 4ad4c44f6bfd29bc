from quaterion.train.callbacks.cleanup_callback import CleanupCallback
from quaterion.train.callbacks.metrics_callback import MetricsCallback

__all__ = ["CleanupCallback", "MetricsCallback"]
