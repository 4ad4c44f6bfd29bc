from __future__ import annotations

from typing import Dict, List, Optional


def merge_meta(meta: Dict[str, List[dict]]) -> Optional[List[dict]]:
    """Per-record meta of several encoders merged into one dict per record."""
    merged: Optional[List[dict]] = None
    for encoder_meta in meta.values():
        if merged is None:
            merged = [dict(m) for m in encoder_meta]
        else:
            for target, extra in zip(merged, encoder_meta):
                target.update(extra)
    return merged
