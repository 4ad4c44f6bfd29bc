"""Which process this is under ``torch.distributed``, and the few collectives simplug needs; on
a single process, rank 0 of 1 and no-ops."""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Collectives:
    """Barrier, broadcast from rank 0 and sum, over the default process group when there is one."""

    def __init__(self) -> None:
        self.active = dist.is_available() and dist.is_initialized()
        self.rank, self.world = rank_and_world()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum_(self, tensor: torch.Tensor) -> None:
        if self.active and tensor.numel():
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
