from typing import Any, Optional

from quaterion.eval.base_metric import BaseMetric
from quaterion.utils.enums import TrainStage


class AttachedMetric:
    """A metric computed on every training and validation batch and logged as
    ``{name}_{stage}``; the ``log_options`` go to Lightning's ``log``. Unknown attributes are looked
    up on the wrapped metric."""

    def __init__(self, name: str, metric: BaseMetric, logger: bool = True, prog_bar: bool = False,
                 on_step: Optional[bool] = None, on_epoch: Optional[bool] = None, **log_options: Any):
        self._metric = metric
        self.name = name
        self.stages = [TrainStage.TRAIN, TrainStage.VALIDATION]
        self.log_options = {"logger": logger, "prog_bar": prog_bar, "on_step": on_step, "on_epoch": on_epoch,
                            **log_options}

    def __getattr__(self, item: str) -> Any:
        if item in ("_metric", "name"):  # not set yet (copy, unpickling): no lookup, no recursion
            raise AttributeError(item)
        try:
            return getattr(self._metric, item)
        except AttributeError as exc:
            raise AttributeError(f"`AttachedMetric` object (<{self.name}>) has no attribute <{item}>") from exc
