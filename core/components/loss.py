"""Similarity loss bases: pair losses and group losses.

Subclasses implement ``compute``; the bases' ``forward`` checks the targets first, so data
of the wrong kind fails with a ``DataError`` that says what to use instead of a shape error
deep in tensor code.
"""
from __future__ import annotations

from typing import Any

import torch
from simplug.components.distance import Distance, resolve_distance
from simplug.errors import ConfigError, DataError
from simplug.registry.building import positive_int
from torch import nn

_PAIR_TARGETS = ("pairs", "labels", "subgroups")


class SimilarityLoss(nn.Module):
    """Base of every loss. ``distance_metric_name`` names a registered distance."""

    #: "pairs" or "groups": what kind of targets ``forward`` takes
    target_kind: str = ""

    def __init__(self, distance_metric_name: str = "cosine"):
        super().__init__()
        self.distance_metric_name = distance_metric_name
        self.distance_metric: Distance = resolve_distance(distance_metric_name)

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric_name": self.distance_metric_name}


def _check_embeddings(loss: SimilarityLoss, embeddings: Any) -> None:
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise DataError(f"{type(loss).__name__} needs embeddings of shape (batch, dim), got {shape}")


class PairwiseLoss(SimilarityLoss):
    """Loss over pairs: ``forward(embeddings, pairs, labels, subgroups)``.

    ``embeddings`` is ``(2N, dim)``; ``pairs`` is ``(N, 2)`` indices into it; ``labels`` the
    pair scores; ``subgroups`` one id per embedding: embeddings of different subgroups
    are negatives of each other (one subgroup for all when left out).
    """

    target_kind = "pairs"

    def forward(  # type: ignore[override]
        self,
        embeddings: torch.Tensor,
        pairs: torch.LongTensor | None = None,
        labels: torch.Tensor | None = None,
        subgroups: torch.Tensor | None = None,
        **other: Any,
    ) -> torch.Tensor:
        name = type(self).__name__
        if "groups" in other or (pairs is not None and labels is None and pairs.dim() == 1):
            raise DataError(
                f"{name} is a pair loss: it takes (embeddings, pairs, labels, subgroups) but got group "
                "ids; use a group loss (e.g. triplet) or give pair data (SimilarityPairSample in a "
                "PairsSimilarityDataLoader)"
            )
        if other:
            raise DataError(f"{name} got unknown targets {sorted(other)}; it takes pairs, labels, subgroups")
        _check_embeddings(self, embeddings)
        if pairs is None or labels is None:
            raise DataError(f"{name} needs the targets pairs (N, 2) and labels (N,)")
        if pairs.dim() != 2 or pairs.shape[1] != 2 or labels.shape != (len(pairs),):
            raise DataError(
                f"{name} needs pairs of shape (N, 2) and labels of shape (N,), got "
                f"{tuple(pairs.shape)} and {tuple(labels.shape)}"
            )
        if subgroups is None:
            subgroups = torch.zeros(len(embeddings), dtype=torch.long, device=embeddings.device)
        elif subgroups.shape != (len(embeddings),):
            raise DataError(
                f"{name} needs one subgroup id per embedding ({len(embeddings)}), got shape {tuple(subgroups.shape)}"
            )
        return self.compute(embeddings, pairs, labels, subgroups)

    def compute(
        self, embeddings: torch.Tensor, pairs: torch.LongTensor, labels: torch.Tensor, subgroups: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError


class GroupLoss(SimilarityLoss):
    """Loss over groups: ``forward(embeddings, groups)`` with one group id per embedding.

    ``xbm_loss(embeddings, groups, memory_embeddings, memory_groups)`` is the loss of the
    batch against embeddings remembered from earlier batches (cross-batch memory).

    A batch in which no group has two items holds no positive pair, and most group losses
    learn nothing from it; ``forward`` warns (at the 1st, 10th, 100th... such batch, not at
    every step) with the fix: balanced batches from ``GroupSimilarityDataLoader(m_per_group=...)``.
    """

    target_kind = "groups"
    batches_without_positives = 0

    def forward(  # type: ignore[override]
        self, embeddings: torch.Tensor, groups: torch.LongTensor | None = None, *other_args: Any, **other: Any
    ) -> torch.Tensor:
        groups = check_groups(self, embeddings, groups, other_args, other)
        self._count_batch_without_positives(groups)
        return self.compute(embeddings, groups)

    def _count_batch_without_positives(self, groups: torch.Tensor) -> None:
        if len(groups) == 0 or len(torch.unique(groups)) < len(groups):
            return
        self.batches_without_positives += 1
        n = self.batches_without_positives
        if n == 10 ** (len(str(n)) - 1):  # 1, 10, 100, ...
            import warnings

            warnings.warn(
                f"{type(self).__name__}: {n} batch(es) so far had no two items of the same group, so "
                "no positive pair to learn from; sample balanced batches with "
                "GroupSimilarityDataLoader(..., m_per_group=4) (or [train] m_per_group in a config)",
                RuntimeWarning,
                stacklevel=3,
            )

    def compute(self, embeddings: torch.Tensor, groups: torch.LongTensor) -> torch.Tensor:
        raise NotImplementedError

    def xbm_loss(
        self,
        embeddings: torch.Tensor,
        groups: torch.LongTensor,
        memory_embeddings: torch.Tensor,
        memory_groups: torch.LongTensor,
    ) -> torch.Tensor:
        raise NotImplementedError

    def check_xbm_support(self) -> None:
        """Raise ``ConfigError`` when this loss cannot be used with cross-batch memory."""
        if type(self).xbm_loss is GroupLoss.xbm_loss:
            raise ConfigError(
                f"{type(self).__name__} does not implement xbm_loss(embeddings, groups, memory_embeddings, "
                "memory_groups), so it cannot use cross-batch memory; implement it or drop configure_xbm"
            )


def check_groups(loss: SimilarityLoss, embeddings: Any, groups: Any, other_args: tuple, other: dict) -> torch.Tensor:
    """The group ids as a long tensor on the embeddings' device, or a ``DataError``."""
    name = type(loss).__name__
    looks_like_pairs = isinstance(groups, torch.Tensor) and groups.dim() == 2
    if other_args or looks_like_pairs or any(k in other for k in _PAIR_TARGETS):
        raise DataError(
            f"{name} is a group loss: it takes (embeddings, groups) with one group id per embedding, but "
            "got pair targets (pairs, labels, subgroups); use a pair loss (e.g. contrastive, "
            "multiple_negatives_ranking, cosent) or give group data (SimilarityGroupSample in a "
            "GroupSimilarityDataLoader)"
        )
    if other:
        raise DataError(f"{name} got unknown targets {sorted(other)}; it takes groups")
    _check_embeddings(loss, embeddings)
    if groups is None:
        raise DataError(f"{name} needs groups: one integer group id per embedding")
    groups = torch.as_tensor(groups, device=embeddings.device)
    if groups.dtype.is_floating_point or groups.dtype.is_complex or groups.dtype == torch.bool:
        raise DataError(f"{name} needs integer group ids, got {groups.dtype}")
    if groups.shape != (len(embeddings),):
        raise DataError(
            f"{name} needs one group id per embedding ({len(embeddings)}), got groups of shape {tuple(groups.shape)}"
        )
    return groups.long()


class EmbeddingGroupLoss(GroupLoss):
    """A group loss that compares embeddings with each other (no learned proxies).

    Subclasses implement ``reference_loss``: the loss of ``embeddings`` as anchors against
    ``references`` as candidates. In a batch both are the batch itself (``same_set``: an
    embedding is not its own positive); with cross-batch memory the references are the
    remembered embeddings.
    """

    def compute(self, embeddings: torch.Tensor, groups: torch.LongTensor) -> torch.Tensor:
        return self.reference_loss(embeddings, groups, embeddings, groups, same_set=True)

    def xbm_loss(self, embeddings, groups, memory_embeddings, memory_groups):  # type: ignore[override]
        return self.reference_loss(embeddings, groups, memory_embeddings, memory_groups, same_set=False)

    def reference_loss(
        self,
        embeddings: torch.Tensor,
        groups: torch.LongTensor,
        references: torch.Tensor,
        reference_groups: torch.LongTensor,
        same_set: bool,
    ) -> torch.Tensor:
        raise NotImplementedError


def group_masks(
    groups: torch.Tensor, reference_groups: torch.Tensor, same_set: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive, negative)`` boolean ``(n, m)`` masks; in one set, nothing is its own positive."""
    same = groups.unsqueeze(1) == reference_groups.unsqueeze(0)
    positive = same.clone()
    if same_set:
        positive.fill_diagonal_(False)
    return positive, ~same


class ProxyGroupLoss(GroupLoss):
    """A group loss that compares each embedding with learned per-group parameters (class
    weights, centres) of shape ``(num_groups, embedding_size)``.

    Its cross-batch-memory term is the same loss over the remembered embeddings: they are
    constants, so it trains the proxies on ``buffer_size`` examples per step instead of one
    batch.
    """

    def __init__(self, embedding_size: int, num_groups: int, distance_metric_name: str = "cosine"):
        super().__init__(distance_metric_name=distance_metric_name)
        positive_int(embedding_size, f"{type(self).__name__}'s embedding_size")
        positive_int(num_groups, f"{type(self).__name__}'s num_groups")
        self.embedding_size = embedding_size
        self.num_groups = num_groups

    def get_config_dict(self) -> dict[str, Any]:
        return {"embedding_size": self.embedding_size, "num_groups": self.num_groups}

    def forward(self, embeddings, groups=None, *other_args, **other):  # type: ignore[override]
        groups = check_groups(self, embeddings, groups, other_args, other)
        check_group_range(self, groups, self.num_groups)
        if embeddings.shape[1] != self.embedding_size:
            raise DataError(
                f"{type(self).__name__} was built with embedding_size={self.embedding_size} but got "
                f"embeddings of size {embeddings.shape[1]}; set embedding_size to the head's output size"
            )
        return self.compute(embeddings, groups)

    def xbm_loss(self, embeddings, groups, memory_embeddings, memory_groups):  # type: ignore[override]
        return self.compute(memory_embeddings.to(embeddings.dtype), memory_groups)


class MarginSoftmaxLoss(ProxyGroupLoss):
    """Base of cross entropy over ``scale * cos(embedding, weight_g)`` with a margin on the
    true group (arcface, cosface); ``weight`` is ``(num_groups, embedding_size)``."""

    def __init__(self, embedding_size: int, num_groups: int, scale: float, margin: float):
        super().__init__(embedding_size, num_groups)
        self.scale = float(scale)
        self.margin = float(margin)
        self.weight = nn.Parameter(torch.empty(num_groups, embedding_size))
        nn.init.xavier_uniform_(self.weight)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "scale": self.scale, "margin": self.margin}

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(batch, num_groups)`` cosines between the embeddings and the group weights."""
        weight = nn.functional.normalize(self.weight.to(embeddings.dtype), dim=1)
        return nn.functional.normalize(embeddings, dim=1) @ weight.T


def check_group_range(loss: nn.Module, groups: torch.Tensor, num_groups: int) -> None:
    """``DataError`` naming the ids outside ``[0, num_groups)``."""
    bad = (groups < 0) | (groups >= num_groups)
    if bad.any():
        ids = sorted(set(groups[bad].tolist()))
        raise DataError(
            f"{type(loss).__name__} was built with num_groups={num_groups} and takes group ids 0.."
            f"{num_groups - 1}, but got {ids[:10]}{' ...' if len(ids) > 10 else ''}; set num_groups to "
            "the number of groups (largest id + 1) or renumber the groups from 0"
        )


def subgroup_negatives(subgroups: torch.Tensor) -> torch.Tensor:
    """Boolean ``(n, n)`` matrix: True where two embeddings are in different subgroups."""
    return subgroups.unsqueeze(0) != subgroups.unsqueeze(1)


def pairs_and_subgroup_negatives(
    embeddings: torch.Tensor,
    pairs: torch.LongTensor,
    labels: torch.Tensor,
    subgroups: torch.Tensor,
    row_fn: Any,
    matrix_fn: Any,
    negative_score: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, scores)``: ``row_fn`` of each given pair with its score and, when the batch
    holds several subgroups, ``matrix_fn`` of every unordered couple of embeddings from
    different subgroups, which counts as one more pair with score ``negative_score``."""
    values = row_fn(embeddings[pairs[:, 0]], embeddings[pairs[:, 1]])
    scores = labels.to(values.dtype)
    negatives = torch.triu(subgroup_negatives(subgroups), diagonal=1)
    if negatives.any():
        negative_values = matrix_fn(embeddings)[negatives]
        values = torch.cat([values, negative_values])
        scores = torch.cat([scores, torch.full_like(negative_values, float(negative_score))])
    return values, scores
