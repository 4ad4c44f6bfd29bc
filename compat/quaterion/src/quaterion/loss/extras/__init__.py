from quaterion.loss.extras.pytorch_metric_learning_wrapper import PytorchMetricLearningWrapper

__all__ = ["PytorchMetricLearningWrapper"]
