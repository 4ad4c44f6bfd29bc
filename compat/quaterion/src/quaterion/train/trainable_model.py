"""TrainableModel with the original's hooks and training step (a Lightning 2 module)."""
from __future__ import annotations

import inspect
import os
from typing import Any, Dict, List, Optional, Union

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from quaterion.eval.attached_metric import AttachedMetric
from quaterion.loss import GroupLoss, SimilarityLoss
from quaterion.train.cache import CacheConfig, CacheEncoder, CacheType, InMemoryCacheEncoder
from quaterion.train.train_collator import TrainCollator
from quaterion.train.xbm import XbmConfig
from quaterion.train.xbm.xbm_buffer import XbmBuffer
from quaterion.utils.enums import TrainStage
from quaterion_models import SimilarityModel
from quaterion_models.encoders import Encoder
from quaterion_models.heads import EncoderHead

_LOG_ARGS = set(inspect.signature(pl.LightningModule.log).parameters) - {"self", "name", "value"}
VAL_SALT = 1


class TrainableModel(pl.LightningModule):
    """Subclass and implement ``configure_encoders``, ``configure_head(input_embedding_size)``,
    ``configure_loss`` and ``configure_optimizers``; optionally ``configure_caches``,
    ``configure_metrics``, ``configure_xbm`` and ``process_results``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        encoders = self.configure_encoders()
        self.cache_config: CacheConfig = self.configure_caches() or CacheConfig(cache_type=CacheType.NONE)
        head = self.configure_head(SimilarityModel.get_encoders_output_size(encoders))
        metrics = self.configure_metrics()
        if metrics is None:
            metrics = []
        self.attached_metrics: List[AttachedMetric] = [metrics] if isinstance(metrics, AttachedMetric) else list(metrics)
        self._model = SimilarityModel(encoders=encoders, head=head)
        self._loss = self.configure_loss()
        self._xbm_config = self.configure_xbm()
        self._xbm_buffer = XbmBuffer(self._xbm_config, embedding_size=head.output_size) if self._xbm_config else None

    # ------------------------------------------------------------------ hooks
    def configure_metrics(self) -> Union[AttachedMetric, List[AttachedMetric]]:
        return []

    def configure_loss(self) -> SimilarityLoss:
        raise NotImplementedError()

    def configure_encoders(self) -> Union[Encoder, Dict[str, Encoder]]:
        raise NotImplementedError()

    def configure_caches(self) -> Optional[CacheConfig]:
        return None

    def configure_head(self, input_embedding_size: int) -> EncoderHead:
        raise NotImplementedError()

    def configure_xbm(self) -> Optional[XbmConfig]:
        return None

    def process_results(self, embeddings: Tensor, targets: Dict[str, Any], batch_idx: int, stage: TrainStage,
                        **kwargs) -> None:
        pass

    @property
    def model(self) -> SimilarityModel:
        return self._model

    @property
    def loss(self) -> SimilarityLoss:
        return self._loss

    # ------------------------------------------------------------------ steps
    def training_step(self, batch, batch_idx: int, **kwargs) -> Tensor:
        return self._common_step(batch, batch_idx, TrainStage.TRAIN, **kwargs)

    def validation_step(self, batch, batch_idx: int, **kwargs) -> None:
        self._common_step(batch, batch_idx, TrainStage.VALIDATION, **kwargs)

    def test_step(self, batch, batch_idx: int, **kwargs) -> None:
        self._common_step(batch, batch_idx, TrainStage.TEST, **kwargs)

    def _common_step(self, batch, batch_idx: int, stage: TrainStage, **kwargs) -> Tensor:
        features, targets = batch
        embeddings = self.model(features)
        loss = self.loss(embeddings=embeddings, **targets)
        loss = self._maybe_compute_xbm_loss(stage, loss, embeddings, targets)
        self.log(f"{stage.value}_loss", loss, batch_size=embeddings.shape[0])
        self._evaluate(embeddings, targets, stage)
        self.process_results(embeddings=embeddings, targets=targets, batch_idx=batch_idx, stage=stage, **kwargs)
        return loss

    def _evaluate(self, embeddings: Tensor, targets: Dict[str, Any], stage: TrainStage) -> None:
        for metric in self.attached_metrics:
            if stage in metric.stages:
                options = {k: v for k, v in metric.log_options.items() if k in _LOG_ARGS}
                self.log(f"{metric.name}_{stage.value}", metric.compute(embeddings, **targets),
                         batch_size=embeddings.shape[0], **options)

    def _maybe_compute_xbm_loss(self, stage, loss, embeddings, targets) -> Tensor:
        if stage != TrainStage.TRAIN or self._xbm_config is None:
            return loss
        if self.trainer.global_step <= self._xbm_config.start_iteration:
            return loss
        if not isinstance(self.loss, GroupLoss):
            raise NotImplementedError("XBM is currently supported only with GroupLoss instances")
        memory_embeddings, memory_groups = self._xbm_buffer.get()
        memory_loss = self.loss.xbm_loss(embeddings, targets["groups"], memory_embeddings.to(embeddings.device),
                                         memory_groups.to(embeddings.device))
        self._xbm_buffer.queue(embeddings.detach(), targets["groups"].detach())
        return loss + self._xbm_config.weight * memory_loss

    # ------------------------------------------------------------------ serving
    def save_servable(self, path: str) -> None:
        """Save the servable model (real encoders, not their caches) in the original's format."""
        self.unwrap_cache()
        self.model.save(path)

    # ------------------------------------------------------------------ data and cache
    def setup_dataloader(self, dataloader: DataLoader) -> None:
        """Install the collator that turns the loader's samples into this model's input."""
        pre_collate = getattr(dataloader, "_quaterion_pre_collate", None)
        if pre_collate is None:
            pre_collate = dataloader.collate_fn
            dataloader._quaterion_pre_collate = pre_collate
        encoders = self.model.encoders
        cached = {key: self._key_extractor(key) for key, enc in encoders.items() if isinstance(enc, CacheEncoder)}
        dataloader.collate_fn = TrainCollator(
            pre_collate_fn=pre_collate,
            encoder_collates={key: enc.get_collate_fn() for key, enc in encoders.items()},
            meta_extractors={key: enc.get_meta_extractor() for key, enc in encoders.items()},
            cached=cached,
        )

    def _key_extractor(self, encoder_key: str):
        extractors = self.cache_config.key_extractors
        if callable(extractors):
            return extractors
        return (extractors or {}).get(encoder_key)

    def _cache_type_of(self, key: str, encoder: Encoder) -> CacheType:
        if encoder.trainable:
            return CacheType.NONE
        cache_type = self.cache_config.mapping.get(key, self.cache_config.cache_type)
        return CacheType(cache_type) if cache_type is not None else CacheType.NONE

    def setup_cache(self, trainer: Optional[pl.Trainer], train_dataloader: DataLoader,
                    val_dataloader: Optional[DataLoader]) -> None:
        """Wrap frozen encoders in in-memory caches, fill them from both loaders (one pass, no
        shuffling), and install the collators that feed cache keys."""
        wrapped = {}
        for key, encoder in self.model.encoders.items():
            cache_type = self._cache_type_of(key, encoder)
            if cache_type != CacheType.NONE and not isinstance(encoder, CacheEncoder):
                wrapped[key] = InMemoryCacheEncoder(encoder, cache_type)
        if wrapped:
            self._replace_encoders({**self.model.encoders, **wrapped})
            if val_dataloader is not None and hasattr(val_dataloader, "set_salt"):
                val_dataloader.set_salt(VAL_SALT)
            self._fill(wrapped, [dl for dl in (train_dataloader, val_dataloader) if dl is not None])
        self.setup_dataloader(train_dataloader)
        if val_dataloader is not None:
            self.setup_dataloader(val_dataloader)

    def _replace_encoders(self, encoders: Dict[str, Encoder]) -> None:
        for key, encoder in encoders.items():
            self.model.encoders[key] = encoder
            self.model.add_module(key, encoder)

    def _cache_file(self, key: str) -> Optional[str]:
        save_dir = self.cache_config.save_dir
        return os.path.join(save_dir, f"{key}.cache.pt") if save_dir else None

    def _fill(self, caches: Dict[str, InMemoryCacheEncoder], loaders: List[DataLoader]) -> None:
        for key, cache in caches.items():
            path = self._cache_file(key)
            if path and os.path.exists(path):
                cache.load_cache(path)
        extractors = {key: self._key_extractor(key) for key in caches}
        # the fill encodes like inference: eval mode (no dropout), no gradients, and on the GPU
        # for a GPU cache (the original filled through a prediction pass on the accelerator)
        modes = {key: cache.wrapped_encoder.training for key, cache in caches.items()}
        for key, cache in caches.items():
            cache.wrapped_encoder.eval()
            if cache.device == "cuda":
                cache.wrapped_encoder.to("cuda")
        try:
            for loader in loaders:
                self._fill_from(loader, caches, extractors)
        finally:
            for key, cache in caches.items():
                cache.wrapped_encoder.train(modes[key])
        for key, cache in caches.items():
            cache.finish_fill()
            path = self._cache_file(key)
            if path:
                cache.save_cache(path)

    def _fill_from(self, loader: DataLoader, caches: Dict[str, InMemoryCacheEncoder], extractors: Dict[str, Any]) -> None:
        pre_collate = getattr(loader, "_quaterion_pre_collate", None) or loader.collate_fn
        workers = self.cache_config.num_workers
        fill_loader = DataLoader(
            loader.dataset, batch_size=self.cache_config.batch_size or 32, shuffle=False,
            collate_fn=pre_collate, num_workers=loader.num_workers if workers is None else workers,
        )
        for ids, objects, _ in fill_loader:
            for key, cache in caches.items():
                extractor = extractors[key]
                keys = [extractor(o) for o in objects] if extractor else list(ids)
                todo: Dict[Any, Any] = {}
                for k, obj in zip(keys, objects):
                    if k not in cache._cache and k not in todo:
                        todo[k] = obj
                if not todo:
                    continue
                encoder = cache.wrapped_encoder
                device = next(encoder.parameters(), torch.empty(0)).device
                data = encoder.get_collate_fn()(list(todo.values()))
                with torch.no_grad():
                    cache.fill_cache(list(todo), _to(data, device))

    def unwrap_cache(self) -> None:
        """Put the real encoders back in place of their caches."""
        real = {key: enc.wrapped_encoder for key, enc in self.model.encoders.items() if isinstance(enc, CacheEncoder)}
        if real:
            self._replace_encoders({**self.model.encoders, **real})


def _to(data: Any, device: torch.device) -> Any:
    from quaterion_models.utils import move_to_device

    return move_to_device(data, device)
