"""``Quaterion.fit(trainable_model, trainer, train_dataloader, val_dataloader=None, ckpt_path=None)``."""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional

import pytorch_lightning as pl
import torch

from quaterion.dataset.similarity_data_loader import GroupSimilarityDataLoader, PairsSimilarityDataLoader
from quaterion.eval.evaluator import Evaluator
from quaterion.loss import GroupLoss, PairwiseLoss
from quaterion.train.cache import CacheType
from quaterion.train.callbacks import CleanupCallback, MetricsCallback
from quaterion.train.trainable_model import TrainableModel
from quaterion.utils.enums import TrainStage


class Quaterion:
    @classmethod
    def fit(cls, trainable_model: TrainableModel, trainer: Optional[pl.Trainer], train_dataloader,
            val_dataloader=None, ckpt_path: Optional[str] = None) -> None:
        """Fill the caches, then ``trainer.fit``. ``trainer=None`` builds one from
        :meth:`trainer_defaults` (early stopping on validation loss when there is validation data)."""
        if isinstance(train_dataloader, PairsSimilarityDataLoader) and not isinstance(trainable_model.loss, PairwiseLoss):
            raise NotImplementedError(
                f"Can't use PairsSimilarityDataLoader with non-PairwiseLoss "
                f"({type(trainable_model.loss).__name__}); use a pair loss or a GroupSimilarityDataLoader"
            )
        if isinstance(train_dataloader, GroupSimilarityDataLoader) and not isinstance(trainable_model.loss, GroupLoss):
            raise NotImplementedError(
                f"Can't use GroupSimilarityDataLoader with non-GroupLoss ({type(trainable_model.loss).__name__}); "
                "use a group loss or a PairsSimilarityDataLoader"
            )
        if trainer is None:
            defaults = cls.trainer_defaults(trainable_model=trainable_model, train_dataloader=train_dataloader)
            if val_dataloader is None:
                defaults["callbacks"] = [c for c in defaults["callbacks"]
                                         if not isinstance(c, pl.callbacks.EarlyStopping)]
            trainer = pl.Trainer(**defaults)
        trainer.callbacks.append(CleanupCallback())
        trainer.callbacks.append(MetricsCallback())
        trainable_model.setup_dataloader(train_dataloader)
        if val_dataloader is not None:
            trainable_model.setup_dataloader(val_dataloader)
        trainable_model.setup_cache(trainer=trainer, train_dataloader=train_dataloader, val_dataloader=val_dataloader)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            trainer.fit(model=trainable_model, train_dataloaders=train_dataloader,
                        val_dataloaders=val_dataloader, ckpt_path=ckpt_path)

    @classmethod
    def evaluate(cls, evaluator: Evaluator, dataset: Any, model: Any) -> Dict[str, torch.Tensor]:
        return evaluator.evaluate(dataset, model)

    @staticmethod
    def trainer_defaults(trainable_model: Optional[TrainableModel] = None, train_dataloader=None) -> Dict[str, Any]:
        from pytorch_lightning.callbacks import EarlyStopping, ModelSummary

        from quaterion.utils.progress_bar import QuaterionProgressBar

        defaults: Dict[str, Any] = {
            # the original's order: progress bar, early stopping, model summary
            "callbacks": [QuaterionProgressBar(), EarlyStopping(f"{TrainStage.VALIDATION.value}_loss"),
                          ModelSummary(max_depth=3)],
            "accelerator": "auto",
            "devices": 1,
            "max_epochs": -1,
        }
        if train_dataloader is not None:
            try:
                batches = len(train_dataloader)
                if batches > 0:
                    defaults["log_every_n_steps"] = min(50, batches)
            except TypeError:
                pass
        if trainable_model is not None:
            config = trainable_model.configure_caches()
            frozen = all(not e.trainable for e in trainable_model.model.encoders.values())
            if frozen and config is not None and config.cache_type != CacheType.NONE:
                defaults["enable_checkpointing"] = False
        return defaults
