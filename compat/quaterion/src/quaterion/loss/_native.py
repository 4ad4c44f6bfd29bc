"""Adapter for the compat names that reuse one of simplug's group losses."""
from torch import Tensor


class OriginalGroupCall:
    """The original's group losses took any numeric group ids (floats too) as keywords or positions."""

    def forward(self, embeddings: Tensor, groups: Tensor = None, *args, **kwargs) -> Tensor:
        if groups is not None and groups.is_floating_point():
            groups = groups.long()
        return super().forward(embeddings, groups, *args, **kwargs)
