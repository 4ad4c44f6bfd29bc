from quaterion.train.train_collator import TrainCollator

__all__ = ["TrainCollator"]
