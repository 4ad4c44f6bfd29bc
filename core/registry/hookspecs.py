"""The plugin contract: one hook per component kind.

A plugin module implements any of these with ``@hookimpl`` and calls
``register(name, target, summary="...")`` for each component it provides.
``target`` is the class itself or a lazy ``"module:attr"`` string, imported on first use.
"""
from __future__ import annotations

import pluggy

PROJECT = "simplug"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# kind name (as shown by `simplug list`) -> hook name
KINDS = {
    "encoders": "register_encoders",
    "heads": "register_heads",
    "losses": "register_losses",
    "distances": "register_distances",
    "metrics": "register_metrics",
    "cache_backends": "register_cache_backends",
    "indexes": "register_indexes",
}


@hookspec
def register_encoders(register):
    """Register encoders: objects turned into embeddings (subclasses of ``simplug.Encoder``)."""


@hookspec
def register_heads(register):
    """Register heads: small trainable layers on top of encoders (``simplug.EncoderHead``)."""


@hookspec
def register_losses(register):
    """Register similarity losses (``simplug.PairwiseLoss`` or ``simplug.GroupLoss``)."""


@hookspec
def register_distances(register):
    """Register distances (``simplug.Distance``)."""


@hookspec
def register_metrics(register):
    """Register evaluation metrics (``simplug.PairMetric`` / ``simplug.GroupMetric``)."""


@hookspec
def register_cache_backends(register):
    """Register embedding cache backends (``simplug.CacheBackend``)."""


@hookspec
def register_indexes(register):
    """Register vector index backends (``simplug.components.index.VectorIndex``)."""
