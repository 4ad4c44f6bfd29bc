"""Shared pieces of the original's classification-style group losses."""
import torch
from torch import nn


def group_kernel(embedding_size: int, num_groups: int) -> nn.Parameter:
    """The original's ``(embedding_size, num_groups)`` weight, drawn from N(0, 0.01^2)."""
    kernel = nn.Parameter(torch.empty(embedding_size, num_groups))
    nn.init.normal_(kernel, std=0.01)
    return kernel


def check_group_ids(groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    groups = groups.long()
    if groups.numel() and (bool(groups.lt(0).any()) or bool(groups.ge(num_groups).any())):
        raise ValueError(
            f"Invalid group ids: all the values must be between 0 (inclusive) and num_groups={num_groups} "
            f"(exclusive), but given: {groups.tolist()}"
        )
    return groups
