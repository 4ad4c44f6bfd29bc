"""TrainableModel: a LightningModule assembled from encoders, a head, a loss and metrics."""
from __future__ import annotations

import copy
import inspect
import math
from typing import Any, Mapping

import pytorch_lightning as pl
import torch
from simplug.components.encoder import Encoder
from simplug.components.head import EncoderHead
from simplug.components.loss import SimilarityLoss
from simplug.components.metric import (
    AttachedMetric,
    Metric,
    attach_metrics,
    attached_metric_from_config,
)
from simplug.data.loaders import SimilarityDataLoader
from simplug.errors import ConfigError, DataError, TrainingDivergedError
from simplug.model.similarity_model import (
    DEFAULT_ENCODER_KEY,
    SIDES,
    SimilarityModel,
    pair_document_mask,
)
from simplug.registry import get_registry
from simplug.registry.building import build_component, check_arguments, split_spec
from simplug.training.cache.config import CacheConfig
from simplug.training.cache.fast_path import is_cached_batch
from simplug.training.cache.mixin import CachingMixin
from simplug.training.lightning_speed import FastStepHooks, store_signature
from simplug.training.xbm import CrossBatchMemory, XbmConfig

STAGES = ("train", "validation", "test")


class TrainableModel(CachingMixin, FastStepHooks, pl.LightningModule):
    """Describe what to train by overriding the ``configure_*`` hooks, as in Quaterion::

        class Model(TrainableModel):
            def configure_encoders(self):
                return TorchModuleEncoder(my_module, embedding_size=64)
            def configure_head(self, input_embedding_size):
                return SkipConnectionHead(input_embedding_size)
            def configure_loss(self):
                return TripletLoss(mining="hard")

    or build the same thing from registered names with ``TrainableModel.from_config``.

    Divergence is stopped, never saved: training raises ``TrainingDivergedError`` when the loss
    becomes non-finite or rises above ``divergence_loss_factor`` times its first value, or when
    at an epoch's end a trainable weight is non-finite or larger in magnitude than
    ``divergence_weight_limit`` (or 1000 times the largest weight before training, if that is
    more); ``save_servable`` then refuses the model. After every healthy epoch the trainable
    weights are kept (on the CPU), so a run stopped by Ctrl-C can save the last completed epoch
    (``restore_last_completed_epoch``).
    """

    divergence_loss_factor: float = 1e3
    divergence_weight_limit: float = 1e6

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()
        encoders = self.configure_encoders()
        if isinstance(encoders, Encoder):
            encoders = {DEFAULT_ENCODER_KEY: encoders}
        if not isinstance(encoders, Mapping) or not encoders:
            raise ConfigError(
                f"configure_encoders must return an Encoder or a dict of them, got {type(encoders).__name__}"
            )
        for key, encoder in encoders.items():
            if not isinstance(encoder, Encoder):
                raise ConfigError(
                    f"configure_encoders returned a {type(encoder).__name__} for {key!r}; wrap plain "
                    "torch modules with simplug.plugins.encoders.torch_module.TorchModuleEncoder"
                )
            encoder.disable_gradients_if_required()
        input_size = sum(e.embedding_size for e in encoders.values())
        head = self.configure_head(input_size)
        self._model = SimilarityModel(encoders, head)
        loss = self.configure_loss()
        if not isinstance(loss, SimilarityLoss) or loss.target_kind not in ("pairs", "groups"):
            raise ConfigError(
                f"configure_loss must return a PairwiseLoss or GroupLoss, got {type(loss).__name__}"
            )
        self._loss = loss
        self._xbm = self._cross_batch_memory(self.configure_xbm())
        self._metrics = attach_metrics(self.configure_metrics())
        self._initial_weight_scale: float | None = None  # the largest trainable weight before any training
        self._first_train_loss: float | None = None
        self._divergence: str | None = None
        self._last_epoch: tuple[int, dict[str, torch.Tensor]] | None = None  # (epochs done, weights)

    # ------------------------------------------------------------------ hooks to override
    def configure_encoders(self) -> Encoder | dict[str, Encoder]:
        raise NotImplementedError("override configure_encoders() to return an Encoder or a dict of named Encoders")

    def configure_head(self, input_embedding_size: int) -> EncoderHead | dict[str, EncoderHead]:
        """One head shared by every object, or ``{"query": head, "document": head}`` for
        pair data whose sides differ (``obj_a`` gets the query head, ``obj_b`` the document
        head); ``EmptyHead`` on the document side makes a head on the query side only."""
        return get_registry().resolve("heads", "empty")(input_embedding_size)

    def configure_loss(self) -> SimilarityLoss:
        raise NotImplementedError("override configure_loss() to return a PairwiseLoss or GroupLoss")

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.trainable_parameters(), lr=1e-3)

    def configure_metrics(self) -> Metric | AttachedMetric | list[Metric | AttachedMetric]:
        """Metrics logged as ``{name}_{stage}``: a bare Metric on validation and test, an
        ``AttachedMetric`` under its own name, stages and logging options."""
        return []

    def configure_caches(self) -> Any:
        """Return a ``simplug.training.cache.config.CacheConfig`` to run frozen encoders once, before the first
        epoch, instead of every step (``CacheConfig()`` caches every frozen encoder); ``None``
        for no cache."""
        return None

    def configure_xbm(self) -> XbmConfig | None:
        """Return an ``XbmConfig`` to add a cross-batch-memory term to a group loss."""
        return None

    def process_results(
        self, embeddings: torch.Tensor, targets: dict[str, Any], batch_idx: int, stage: str, **kwargs: Any
    ) -> None:
        """Called with every batch's embeddings and targets; override for extra evaluation."""

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> SimilarityModel:
        return self._model

    @property
    def loss(self) -> SimilarityLoss:
        return self._loss

    @property
    def metrics(self) -> list[Metric]:
        return [attached.metric for attached in self._metrics]

    @property
    def attached_metrics(self) -> list[AttachedMetric]:
        """The metrics with the names and options they are logged under."""
        return list(self._metrics)

    @property
    def xbm(self) -> CrossBatchMemory | None:
        """The cross-batch memory set up from ``configure_xbm()``, or None."""
        return self._xbm

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The model's trainable parameters, then the loss's own (e.g. arcface's group weights)."""
        params = [p for p in self._model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(
                "nothing to train: every encoder is frozen and the head has no parameters; use a "
                "head with weights (e.g. skip_connection) or a trainable encoder"
            )
        return params + [p for p in self._loss.parameters() if p.requires_grad]

    def _cross_batch_memory(self, config: Any) -> CrossBatchMemory | None:
        if config is None:
            return None
        if not isinstance(config, XbmConfig):
            raise ConfigError(f"configure_xbm must return an XbmConfig or None, got {type(config).__name__}")
        if self._loss.target_kind != "groups":
            raise ConfigError(
                f"cross-batch memory works with group losses, but {type(self._loss).__name__} is a pair loss; "
                "drop the xbm config or use a group loss"
            )
        self._loss.check_xbm_support()
        return CrossBatchMemory(config)

    # ------------------------------------------------------------------ steps
    def forward(self, batch: Any) -> torch.Tensor:
        return self._model(batch)

    def _step(self, batch: Any, batch_idx: int, stage: str) -> torch.Tensor:
        if is_cached_batch(batch):  # the cache's fast path: see simplug.training.cache.fast_path
            encoder_embeddings, targets = self.cached_embeddings(batch)
            embeddings = self._model.apply_heads(encoder_embeddings, self._sides_of(targets))
        else:
            features, targets = batch
            embeddings = self._model(features, side=self._sides_of(targets))
        loss = self._loss(embeddings, **targets)
        if stage == "train" and self._xbm is not None:
            xbm_term = self._xbm.loss_term(self._loss, embeddings, targets["groups"], self.global_step)
            if xbm_term is not None:
                self.log("loss_xbm_train", xbm_term.detach(), on_step=True, on_epoch=True, batch_size=len(embeddings))
                loss = loss + self._xbm.config.weight * xbm_term
        # one check per step: a NaN embedding shows in the loss, and is named when it does.
        # (.item() waits for the device as bool(isfinite) would, and costs 5 us less a step)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            scale, limit = self._weight_scale(), self._weight_limit()
            if not math.isfinite(scale) or scale > limit:  # the weights, not the data, broke the loss
                weights = (f"a trainable weight became {scale}" if not math.isfinite(scale) else
                           f"the largest trainable weight is {scale:.3g} (the limit is {limit:.3g})")
                self._diverge(f"the loss became {loss_value} at {stage} step {self.global_step}: {weights}")
            if not torch.isfinite(embeddings).all():
                raise DataError(
                    f"the model produced NaN or inf embeddings at {stage} step {self.global_step} "
                    f"(batch {batch_idx}); check the input data and lower the learning rate"
                )
            raise DataError(
                f"the loss became {loss_value} at {stage} step {self.global_step} (batch "
                f"{batch_idx}); lower the learning rate or check the input data"
            )
        if stage == "train":
            first = self._first_train_loss
            if first is None:
                self._first_train_loss = abs(loss_value)
            elif loss_value > self.divergence_loss_factor * max(first, 1.0):
                self._diverge(
                    f"the training loss rose to {loss_value:.4g} at step {self.global_step}, from {first:.4g} at the "
                    f"first step (more than {self.divergence_loss_factor:g} times)"
                )
        batch_size = embeddings.shape[0]
        self._log_loss(loss.detach(), loss_value, stage, batch_idx, batch_size)
        for attached in self._metrics:
            if stage in attached.stages:
                value = attached.compute(embeddings, targets)
                if not torch.isnan(value):
                    self.log(f"{attached.name}_{stage}", value, batch_size=batch_size, **attached.log_options(stage))
        self.process_results(embeddings=embeddings, targets=targets, batch_idx=batch_idx, stage=stage)
        return loss

    # ------------------------------------------------------------------ loss logging
    _train_loss = None  # [summed loss * batch size, samples]; a list, so no nn.Module setattr per step

    def _log_loss(self, loss: torch.Tensor, value: float, stage: str, batch_idx: int, batch_size: int) -> None:
        """Log ``loss_{stage}``; the training loss under the names Lightning's on_step+on_epoch
        logging gives it (``loss_train_step``, ``loss_train_epoch``, ``loss_train``).

        A ``self.log`` call costs a few hundred microseconds, as much as a whole cached step of a
        small head, so the step value goes to Lightning only on the steps its loggers write and
        the epoch mean is summed here."""
        if stage != "train":
            self.log(f"loss_{stage}", loss, on_epoch=True, prog_bar=True, batch_size=batch_size)
            return
        acc = self._train_loss
        if batch_idx == 0 or acc is None:
            acc = self._train_loss = [0.0, 0]
        acc[0] += value * batch_size
        acc[1] += batch_size
        trainer = self._trainer
        every = getattr(trainer, "log_every_n_steps", 1) or 1
        if batch_idx == 0 or trainer is None or (trainer.fit_loop.epoch_loop._batches_that_stepped + 1) % every == 0:
            self.log("loss_train_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=batch_size)

    def on_train_epoch_end(self) -> None:
        acc = self._train_loss
        if acc is not None and acc[1]:
            mean = torch.tensor(acc[0] / acc[1], device=self.device)
            self.log("loss_train_epoch", mean, on_step=False, on_epoch=True)
            self.log("loss_train", mean, on_step=False, on_epoch=True, logger=False)
        self._train_loss = None
        self._check_weights()
        # a healthy epoch: what Ctrl-C during the next one saves
        self._last_epoch = (self.current_epoch + 1, self._trainable_state())

    # ------------------------------------------------------------------ divergence
    def on_fit_start(self) -> None:
        super().on_fit_start()  # the cache fill
        if self._initial_weight_scale is None:  # once per model: a second fit must not take huge weights as normal
            self._initial_weight_scale = self._weight_scale()
        self._first_train_loss = None
        self._divergence = None
        self._last_epoch = None

    def _weight_scale(self) -> float:
        """The largest magnitude of a trainable weight (nan or inf when one is not finite)."""
        params = [p.detach() for p in self._model.parameters() if p.requires_grad]
        if not params:
            return 0.0
        return float(torch.stack([p.abs().max() if p.numel() else p.new_zeros(()) for p in params]).max())

    def _weight_limit(self) -> float:
        return max(self.divergence_weight_limit, 1e3 * (self._initial_weight_scale or 0.0))

    def _check_weights(self) -> None:
        scale, limit = self._weight_scale(), self._weight_limit()
        if not math.isfinite(scale):
            self._diverge(f"a trainable weight became {scale} by the end of epoch {self.current_epoch + 1}")
        if scale > limit:
            self._diverge(
                f"the largest trainable weight is {scale:.3g} at the end of epoch {self.current_epoch + 1} "
                f"(it was {self._initial_weight_scale or 0.0:.3g} before training; the limit is {limit:.3g})"
            )

    def divergence_hint(self) -> str:
        """What to change after a divergence (subclasses that know their optimizer say more)."""
        return "Lower the learning rate (e.g. 10 times) and train again"

    def _diverge(self, what: str) -> None:
        self._divergence = f"training diverged: {what}"
        raise TrainingDivergedError(f"{self._divergence}. The model was not saved. {self.divergence_hint()}")

    @property
    def divergence(self) -> str | None:
        """Why the last fit diverged, or None."""
        return self._divergence

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        """A CPU copy of what training changes: trainable parameters and every buffer."""
        state = {name: p.detach().to("cpu", copy=True) for name, p in self._model.named_parameters() if p.requires_grad}
        state.update({name: b.detach().to("cpu", copy=True) for name, b in self._model.named_buffers()})
        return state

    @property
    def last_completed_epoch(self) -> int:
        """How many epochs of the last fit completed without diverging (0 before any)."""
        return self._last_epoch[0] if self._last_epoch is not None else 0

    def restore_last_completed_epoch(self) -> int:
        """Put back the weights of the last completed (healthy) epoch; returns its number, 0 if none."""
        if self._last_epoch is None:
            return 0
        epochs, state = self._last_epoch
        unexpected = self._model.load_state_dict(state, strict=False).unexpected_keys
        if unexpected:  # pragma: no cover - the same model wrote the state
            raise RuntimeError(f"cannot restore epoch {epochs}: unexpected weights {unexpected}")
        self._divergence = None
        return epochs

    def _sides_of(self, targets: Mapping[str, Any]) -> torch.Tensor | None:
        """For a model with a head per side: which rows of a pair batch are documents."""
        if not self._model.sides:
            return None
        pairs = targets["pairs"]
        return pair_document_mask(pairs, 2 * pairs.shape[0])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, batch_idx, "train")


    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, batch_idx, "validation")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, batch_idx, "test")

    # ------------------------------------------------------------------ data and saving
    def setup_dataloader(self, dataloader: Any) -> None:
        """Give a similarity loader the model's collate (each encoder's own)."""
        if not isinstance(dataloader, SimilarityDataLoader):
            raise DataError(
                f"expected a PairsSimilarityDataLoader or GroupSimilarityDataLoader, got {type(dataloader).__name__}"
            )
        if self._model.sides and dataloader.target_kind != "pairs":
            raise ConfigError(
                "a model with a head per side (query/document) trains on pairs, whose obj_a is the "
                f"query and obj_b the document, but got a {type(dataloader).__name__}; use one shared head for groups"
            )
        if dataloader.target_kind != self._loss.target_kind:
            want = "PairsSimilarityDataLoader" if self._loss.target_kind == "pairs" else "GroupSimilarityDataLoader"
            raise ConfigError(
                f"{type(self._loss).__name__} is a {self._loss.target_kind[:-1]} loss and needs a {want}, "
                f"but got a {type(dataloader).__name__}; use a "
                f"{'pair' if dataloader.target_kind == 'pairs' else 'group'} loss or a {want}"
            )
        dataloader.set_model_collate(self._model.get_collate_fn())

    def training_info(self) -> dict[str, Any]:
        record = get_registry().find_instance("losses", self._loss)
        return {
            "loss": {
                "name": record.qualified_name if record else type(self._loss).__qualname__,
                "config": self._loss.get_config_dict(),
            },
            "metrics": [attached.name for attached in self._metrics],
        }

    def save_servable(self, path: str, training: Mapping[str, Any] | None = None) -> str:
        """Save encoders and head (no Lightning, no loss) as a servable model directory.
        ``training``: more to record under the manifest's ``training`` (e.g. the data's kind and
        field names, which ``simplug evaluate`` reads).

        A model whose training diverged, or whose weights are not finite, is refused."""
        if self._divergence is not None:
            raise TrainingDivergedError(f"{self._divergence}, and a diverged model is not saved. {self.divergence_hint()}")
        scale = self._weight_scale()
        if not math.isfinite(scale):
            raise TrainingDivergedError(
                f"the model has non-finite weights ({scale}) and is not saved. {self.divergence_hint()}"
            )
        return self._model.save(path, training={**self.training_info(), **(training or {})})

    # ------------------------------------------------------------------ config
    @classmethod
    def from_config(cls, config: Mapping[str, Any], num_groups: int | None = None) -> "TrainableModel":
        """Build a model from registered component names, e.g.::

            TrainableModel.from_config({
                "encoder": my_encoder,           # an Encoder, or {"name": ..., **args}
                "head": {"name": "skip_connection", "n_layers": 2},
                # or, for pairs whose sides differ, a head per side (here the query side only):
                # "heads": {"query": {"name": "skip_connection"}, "document": "empty"},
                "loss": {"name": "triplet", "margin": 0.3},
                "optimizer": {"name": "adam", "lr": 1e-3},
                "metrics": [{"name": "retrieval_precision", "k": 1}],
                "xbm": {"weight": 0.5, "buffer_size": 2048, "start_iteration": 100},  # optional
                "cache": {"cache_type": "disk", "save_dir": "cache"},   # optional: CacheConfig settings
            })

        A loss with per-group weights (arcface, cosface, softmax, center) gets
        ``embedding_size`` from the head, and ``num_groups`` from ``num_groups`` (the number of
        group labels in the data), when the config leaves them out.
        """
        return ConfigTrainableModel(config, num_groups=num_groups)


store_signature(TrainableModel.training_step)

_CONFIG_KEYS = ("encoder", "encoders", "head", "heads", "loss", "optimizer", "metrics", "xbm", "cache")
_OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad"}


class ConfigTrainableModel(TrainableModel):
    """A TrainableModel whose hooks build components from a config of registered names."""

    def __init__(self, config: Mapping[str, Any], num_groups: int | None = None):
        if not isinstance(config, Mapping):
            raise ConfigError(f"a model config is a dict, got {type(config).__name__}")
        unknown = [k for k in config if k not in _CONFIG_KEYS]
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(map(repr, unknown))}; the keys are: {', '.join(_CONFIG_KEYS)}")
        if ("encoder" in config) == ("encoders" in config):
            raise ConfigError("the config needs exactly one of 'encoder' (one encoder) or 'encoders' (a dict of named ones)")
        if "head" in config and "heads" in config:
            raise ConfigError(
                "give either 'head' (one head shared by both sides) or 'heads' (a table with a "
                "'query' and a 'document' head), not both"
            )
        if "loss" not in config:
            raise ConfigError("the config needs a 'loss', e.g. {'name': 'triplet'}")
        self._config = dict(config)
        self._num_groups = num_groups
        self._optimizer_spec()  # a bad optimizer fails here, not when training starts
        super().__init__()

    def configure_encoders(self) -> Encoder | dict[str, Encoder]:
        if "encoder" in self._config:
            return build_component("encoders", self._config["encoder"], Encoder)
        encoders = self._config["encoders"]
        if not isinstance(encoders, Mapping) or not encoders:
            raise ConfigError("'encoders' must be a non-empty table of named encoders")
        return {key: build_component("encoders", spec, Encoder) for key, spec in encoders.items()}

    def configure_head(self, input_embedding_size: int) -> EncoderHead | dict[str, EncoderHead]:
        if "heads" not in self._config:
            spec = self._config.get("head", "empty")
            return build_component("heads", spec, EncoderHead, input_embedding_size=input_embedding_size)
        specs = self._config["heads"]
        if not isinstance(specs, Mapping) or sorted(specs) != sorted(SIDES):
            got = ", ".join(map(repr, specs)) if isinstance(specs, Mapping) else type(specs).__name__
            raise ConfigError(
                f"'heads' must be a table with exactly the sides 'query' and 'document' (got {got}), "
                "e.g. heads = {query = {name = \"skip_connection\"}, document = \"empty\"}"
            )
        return {
            side: build_component("heads", specs[side], EncoderHead, input_embedding_size=input_embedding_size)
            for side in SIDES
        }

    def configure_loss(self) -> SimilarityLoss:
        spec = self._config["loss"]
        extra = {}
        if not isinstance(spec, SimilarityLoss):
            # losses with per-group weights need the embedding size: it is the head's output
            cls = get_registry().resolve("losses", split_spec(spec, "loss")[0])
            parameters = inspect.signature(cls).parameters
            if "embedding_size" in parameters:
                extra["embedding_size"] = self._model.embedding_size
            if "num_groups" in parameters and self._num_groups:
                extra["num_groups"] = self._num_groups
        return build_component("losses", spec, SimilarityLoss, **extra)

    def configure_xbm(self) -> XbmConfig | None:
        spec = self._config.get("xbm")
        if spec is None or isinstance(spec, XbmConfig):
            return spec
        if not isinstance(spec, Mapping):
            raise ConfigError(f"'xbm' must be a table like {{weight = 1.0, buffer_size = 1000}}, got {type(spec).__name__}")
        check_arguments(XbmConfig, spec, "xbm")
        return XbmConfig(**spec)

    def configure_metrics(self) -> list[Metric | AttachedMetric]:
        specs = self._config.get("metrics", [])
        if isinstance(specs, (str, Mapping)):
            specs = [specs]
        return [attached_metric_from_config(spec) for spec in specs]

    def configure_caches(self) -> Any:
        return CacheConfig.from_spec(self._config.get("cache"))

    def use_cache(self, spec: Any) -> None:
        """Set the config's ``cache`` after the model is built (read when training starts)."""
        CacheConfig.from_spec(spec)  # a bad spec fails here, not at fit time
        self._config["cache"] = spec

    def _optimizer_spec(self) -> tuple[type, dict[str, Any]]:
        """The optimizer class and its arguments, checked: a known name, known arguments, and a
        learning rate that is a positive finite number."""
        spec = copy.deepcopy(self._config.get("optimizer", {"name": "adam"}))
        name, args = split_spec(spec, "optimizer")
        if not isinstance(name, str) or name.lower() not in _OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(_OPTIMIZERS)}")
        optimizer_cls = getattr(torch.optim, _OPTIMIZERS[name.lower()])
        args.setdefault("lr", 1e-3)
        lr = args["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ConfigError(f"optimizer lr must be a positive finite number, e.g. lr = 0.001, got {lr!r}")
        check_arguments(optimizer_cls.__init__, args, f"optimizer {name!r}", skip=("params",))
        return optimizer_cls, args

    def configure_optimizers(self) -> Any:
        optimizer_cls, args = self._optimizer_spec()
        return optimizer_cls(self.trainable_parameters(), **args)

    def divergence_hint(self) -> str:
        _, args = self._optimizer_spec()
        return f"Lower the optimizer's learning rate (lr = {args['lr']:g} now; try {args['lr'] / 10:g} or less) and train again"
