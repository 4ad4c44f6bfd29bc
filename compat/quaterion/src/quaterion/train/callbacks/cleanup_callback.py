from typing import Optional

import pytorch_lightning as pl


class CleanupCallback(pl.Callback):
    """After fitting, puts the real encoders back in place of their caches."""

    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: Optional[str] = None) -> None:
        if stage in ("fit", getattr(getattr(pl.trainer.states, "TrainerFn", None), "FITTING", "fit")):
            pl_module.unwrap_cache()
