import pytorch_lightning as pl


class MetricsCallback(pl.Callback):
    """Resets the attached metrics' accumulated state at the start and end of every epoch."""

    @staticmethod
    def reset_metrics(trainable_model) -> None:
        for metric in getattr(trainable_model, "attached_metrics", None) or []:
            if hasattr(metric, "reset"):
                metric.reset()

    def on_sanity_check_end(self, trainer, trainable_model) -> None:
        self.reset_metrics(trainable_model)

    def on_train_epoch_start(self, trainer, trainable_model) -> None:
        self.reset_metrics(trainable_model)

    def on_train_epoch_end(self, trainer, trainable_model) -> None:
        self.reset_metrics(trainable_model)

    def on_validation_epoch_start(self, trainer, trainable_model) -> None:
        self.reset_metrics(trainable_model)

    def on_validation_epoch_end(self, trainer, trainable_model) -> None:
        self.reset_metrics(trainable_model)
