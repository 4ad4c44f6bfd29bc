"""Errors raised by simplug. Every message names the problem and the fix."""
from __future__ import annotations


class SimplugError(Exception):
    """Base class of every error simplug raises on purpose."""


class ComponentNotFoundError(SimplugError, LookupError):
    """A component name that no loaded plugin registered."""


class AmbiguousComponentError(SimplugError, LookupError):
    """Two distributions registered the same kind and name."""


class PluginError(SimplugError):
    """A plugin failed to import or to register (raised in strict mode)."""


class ConfigError(SimplugError, ValueError):
    """A configuration that names unknown components or wrong arguments."""


class DataError(SimplugError, ValueError):
    """Training or evaluation data of the wrong type or shape."""


class ModelFormatError(SimplugError):
    """A saved model that cannot be read: missing, unknown format or corrupt."""


class MissingPluginError(ModelFormatError):
    """A saved model needs a plugin distribution that is not installed."""


class UntrustedCodeError(ModelFormatError):
    """A saved model holds local code and trust_local_code was not given."""


class TrainingDivergedError(SimplugError):
    """Training diverged: the loss exploded, or the weights became huge or non-finite."""


class TrainingInterrupted(SimplugError):
    """Training was stopped by Ctrl-C; ``epochs_completed`` full epochs had finished."""

    def __init__(self, message: str, epochs_completed: int = 0) -> None:
        super().__init__(message)
        self.epochs_completed = epochs_completed
