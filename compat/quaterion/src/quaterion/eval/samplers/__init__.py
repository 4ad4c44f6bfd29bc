from quaterion.eval.samplers.base_sampler import BaseSampler

__all__ = ["BaseSampler"]
