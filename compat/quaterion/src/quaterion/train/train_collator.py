"""Turns a loader's ``(ids, objects, labels)`` into ``({"data": ..., "meta": ...}, labels)``."""
from __future__ import annotations

from typing import Any, Callable, Dict, Hashable, Optional

from quaterion_models.utils.meta import merge_meta


class TrainCollator:
    """Picklable (for worker processes) when the collate functions and key extractors are."""

    def __init__(self, pre_collate_fn: Callable, encoder_collates: Dict[str, Callable],
                 meta_extractors: Dict[str, Callable], cached: Dict[str, Optional[Callable[[Any], Hashable]]]):
        self.pre_collate_fn = pre_collate_fn
        self.encoder_collates = encoder_collates
        self.meta_extractors = meta_extractors
        #: encoder key -> key extractor (None: keyed by sample id) for cached encoders
        self.cached = cached

    def __call__(self, batch):
        ids, objects, labels = self.pre_collate_fn(batch)
        data = {}
        for key, collate in self.encoder_collates.items():
            if key in self.cached:
                extractor = self.cached[key]
                data[key] = collate([extractor(o) for o in objects] if extractor else list(ids))
            else:
                data[key] = collate(objects)
        meta = merge_meta({key: fn(objects) for key, fn in self.meta_extractors.items()})
        return {"data": data, "meta": meta}, labels
