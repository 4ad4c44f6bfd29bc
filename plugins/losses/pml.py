"""``pml``: any pytorch-metric-learning loss (and miner) by name.

pytorch_metric_learning is imported only when a wrapper is built, so listing plugins and
serving never import it.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Mapping

import torch
from simplug.components.loss import GroupLoss, check_group_range
from simplug.errors import ConfigError

_INSTALL = "pip install pytorch-metric-learning  (or: pip install 'simplug[train]')"
# bases and wrappers that cannot be built from a name and arguments alone
_NOT_LOSSES = {"BaseMetricLossFunction", "GenericPairLoss", "BaseLossWrapper", "CrossBatchMemory", "MultipleLosses"}


def _import_pml() -> Any:
    try:
        import pytorch_metric_learning
    except ImportError as exc:
        raise ConfigError(
            f"the 'pml' loss needs pytorch-metric-learning, which is not installed ({exc}); install it with: {_INSTALL}"
        ) from exc
    return pytorch_metric_learning


def _choices(module: Any, base: type, exclude: set[str]) -> list[str]:
    return sorted(
        name for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, base) and name not in exclude and not name.startswith("Base")
    )


def _build(module: Any, base: type, what: str, name: Any, args: Any, exclude: set[str] = frozenset()) -> Any:
    """An instance of the class ``name`` of a pytorch_metric_learning submodule."""
    choices = _choices(module, base, set(exclude))
    if not isinstance(name, str) or name not in choices:
        close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"pytorch_metric_learning.{module.__name__.rsplit('.', 1)[-1]} has no {what} {name!r}.{hint} "
            f"Its {what} classes are: {', '.join(choices)}"
        )
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ConfigError(f"the arguments of the pml {what} {name} must be a table, got {type(args).__name__}")
    cls = getattr(module, name)
    try:
        return cls(**args)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(
            f"pytorch_metric_learning {name}{inspect.signature(cls)} rejected the arguments {dict(args)}: {exc}"
        ) from exc


class PytorchMetricLearningWrapper(GroupLoss):
    """A pytorch-metric-learning loss, and optionally a miner, used as a group loss::

        {"name": "pml", "loss": "TripletMarginLoss", "loss_args": {"margin": 0.1},
         "miner": "MultiSimilarityMiner", "miner_args": {"epsilon": 0.1}}

    ``distance`` / ``distance_args`` name a ``pytorch_metric_learning.distances`` class given
    to the loss. As in Quaterion, ``loss`` and ``miner`` may also be pytorch-metric-learning
    objects (``PytorchMetricLearningWrapper(TripletMarginLoss(), miner)``); the config then
    records their class names only. Losses with learned parameters (ArcFaceLoss, ProxyAnchorLoss, ...) train
    them with the model. With cross-batch memory, losses that accept reference embeddings
    compare the batch with the memory; proxy losses train their proxies on it.
    """

    def __init__(
        self,
        loss: Any,
        miner: Any = None,
        loss_args: Mapping[str, Any] | None = None,
        miner_args: Mapping[str, Any] | None = None,
        distance: str | None = None,
        distance_args: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        pml = _import_pml()
        from pytorch_metric_learning import distances, losses, miners

        self.pml_version = pml.__version__
        if isinstance(loss, losses.BaseMetricLossFunction):
            self.pml_loss, loss = loss, type(loss).__name__
        else:
            args = dict(loss_args or {})
            if distance is not None:
                if "distance" in args:
                    raise ConfigError("give the pml distance either as 'distance' or inside 'loss_args', not both")
                args["distance"] = _build(distances, distances.BaseDistance, "distance", distance, distance_args)
            self.pml_loss = _build(losses, losses.BaseMetricLossFunction, "loss", loss, args, _NOT_LOSSES)
        if isinstance(miner, miners.BaseMiner):
            self.pml_miner, miner = miner, type(miner).__name__
        else:
            self.pml_miner = None if miner is None else _build(miners, miners.BaseMiner, "miner", miner, miner_args)
        self._config = {
            "loss": loss, "miner": miner, "loss_args": dict(loss_args or {}), "miner_args": dict(miner_args or {}),
            "distance": distance, "distance_args": dict(distance_args or {}),
        }

    def get_config_dict(self) -> dict[str, Any]:
        return {key: (dict(value) if isinstance(value, dict) else value) for key, value in self._config.items()}

    def _indices(self, embeddings, groups, references=None, reference_groups=None):
        if self.pml_miner is None:
            return None
        return self.pml_miner(embeddings, groups, references, reference_groups)

    def compute(self, embeddings: torch.Tensor, groups: torch.LongTensor) -> torch.Tensor:
        num_classes = getattr(self.pml_loss, "num_classes", None)
        if isinstance(num_classes, int):
            check_group_range(self, groups, num_classes)
        return self.pml_loss(embeddings, groups, self._indices(embeddings, groups))

    def _compares_with_references(self) -> bool:
        from pytorch_metric_learning import losses

        supported = [getattr(losses, name) for name in losses.CrossBatchMemory.supported_losses()]
        return isinstance(self.pml_loss, tuple(supported))

    def check_xbm_support(self) -> None:
        if not self._compares_with_references() and not any(True for _ in self.pml_loss.parameters()):
            from pytorch_metric_learning import losses

            raise ConfigError(
                f"pytorch_metric_learning {self._config['loss']} neither compares with reference embeddings "
                "nor learns proxies, so it cannot use cross-batch memory; use one of "
                f"{', '.join(losses.CrossBatchMemory.supported_losses())} or a proxy loss, or drop the xbm config"
            )

    def xbm_loss(self, embeddings, groups, memory_embeddings, memory_groups):  # type: ignore[override]
        memory_embeddings = memory_embeddings.to(embeddings.dtype)
        if not self._compares_with_references():
            return self.compute(memory_embeddings, memory_groups)  # proxies learn from the memory
        indices = self._indices(embeddings, groups, memory_embeddings, memory_groups)
        return self.pml_loss(embeddings, groups, indices, memory_embeddings, memory_groups)
