"""Data loaders that turn similarity samples into model inputs and loss targets."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from simplug.data.distributed import rank_and_world
from simplug.data.samples import SimilarityGroupSample, SimilarityPairSample
from simplug.errors import DataError
from simplug.registry.building import positive_int
from torch.utils.data import DataLoader, Dataset


class _CollateWithFeatures:
    """Picklable collate: the loader's targets plus the model's features."""

    def __init__(self, pre_collate: Callable, model_collate: Callable):
        self.pre_collate = pre_collate
        self.model_collate = model_collate

    def __call__(self, batch: list[Any]) -> tuple[Any, dict[str, torch.Tensor]]:
        records, targets = self.pre_collate(batch)
        return self.model_collate(records), targets


class SimilarityDataLoader(DataLoader):
    """Base of the pair and group loaders. Until a model sets its collate, a batch is
    ``(raw_objects, targets)``."""

    sample_type: type = object
    target_kind = ""
    other_loader = ""

    def __init__(self, dataset: Dataset | Sequence[Any], **kwargs: Any):
        if "collate_fn" in kwargs:
            raise DataError(
                f"{type(self).__name__} builds its own batches; give the encoder a collate function instead"
            )
        if kwargs.get("batch_size") is not None:
            kwargs["batch_size"] = positive_int(kwargs["batch_size"], f"{type(self).__name__} batch_size", error=DataError)
        if hasattr(dataset, "__len__"):
            if len(dataset) == 0:
                raise DataError(f"{type(self).__name__} got an empty data set; give it at least one {self.sample_type.__name__}")
            self._check(dataset[0], "item 0 of the data set")
        super().__init__(dataset, collate_fn=self.pre_collate, **kwargs)

    def _check(self, sample: Any, where: str) -> None:
        if not isinstance(sample, self.sample_type):
            hint = ""
            if isinstance(sample, (SimilarityPairSample, SimilarityGroupSample)):
                hint = f"; for {type(sample).__name__} data use {self.other_loader}"
            raise DataError(
                f"{type(self).__name__} needs {self.sample_type.__name__} items, but {where} "
                f"is a {type(sample).__name__}{hint}"
            )

    def _check_batch(self, batch: list[Any]) -> None:
        for i, sample in enumerate(batch):
            self._check(sample, f"item {i} of a batch")

    def set_model_collate(self, model_collate: Callable[[list[Any]], Any]) -> None:
        self.collate_fn = _CollateWithFeatures(self.pre_collate, model_collate)

    def pre_collate(self, batch: list[Any]) -> tuple[list[Any], dict[str, torch.Tensor]]:
        raise NotImplementedError


class PairsSimilarityDataLoader(SimilarityDataLoader):
    """Batches of N pairs become 2N objects (all ``obj_a`` then all ``obj_b``) and targets
    ``{"pairs": (N, 2), "labels": (N,), "subgroups": (2N,)}``."""

    sample_type = SimilarityPairSample
    target_kind = "pairs"
    other_loader = "GroupSimilarityDataLoader"

    def pre_collate(self, batch: list[Any]) -> tuple[list[Any], dict[str, torch.Tensor]]:
        self._check_batch(batch)
        n = len(batch)
        records = [s.obj_a for s in batch] + [s.obj_b for s in batch]
        pairs = torch.stack([torch.arange(n), torch.arange(n, 2 * n)], dim=1)
        labels = torch.tensor([float(s.score) for s in batch])
        subgroups = torch.tensor([int(s.subgroup) for s in batch] * 2)
        return records, {"pairs": pairs, "labels": labels, "subgroups": subgroups}


class GroupSimilarityDataLoader(SimilarityDataLoader):
    """Batches of objects with targets ``{"groups": (N,)}``.

    ``m_per_group=m`` draws balanced batches: ``batch_size // m`` distinct groups per batch
    and ``m`` items of each, so every batch holds positive pairs for a group loss (plain
    shuffling of many groups gives batches with almost none). Batches are deterministic for
    a ``seed`` and change every epoch; see :class:`GroupBalancedBatchSampler`.
    """

    sample_type = SimilarityGroupSample
    target_kind = "groups"
    other_loader = "PairsSimilarityDataLoader"

    def __init__(
        self,
        dataset: Dataset | Sequence[Any],
        batch_size: int = 1,
        m_per_group: int | None = None,
        seed: int = 0,
        group_sampling: str = "uniform",
        **kwargs: Any,
    ):
        if m_per_group is None:
            super().__init__(dataset, batch_size=batch_size, **kwargs)
            return
        clashing = [k for k in ("shuffle", "sampler", "batch_sampler", "drop_last") if kwargs.get(k)]
        if clashing:
            raise DataError(
                f"m_per_group builds its own balanced batches, so {', '.join(clashing)} cannot be "
                "given with it; drop them, or drop m_per_group for plain batches"
            )
        for key in ("shuffle", "sampler", "batch_sampler", "drop_last"):
            kwargs.pop(key, None)
        if not hasattr(dataset, "__len__") or len(dataset) == 0:
            raise DataError("m_per_group needs a non-empty data set with a length (a list or a map-style Dataset)")
        groups = []
        for i in range(len(dataset)):
            sample = dataset[i]
            self._check(sample, f"item {i} of the data set")
            groups.append(int(sample.group))
        sampler = GroupBalancedBatchSampler(
            groups, batch_size=batch_size, m_per_group=m_per_group, seed=seed, group_sampling=group_sampling
        )
        super().__init__(dataset, batch_sampler=sampler, **kwargs)

    def pre_collate(self, batch: list[Any]) -> tuple[list[Any], dict[str, torch.Tensor]]:
        self._check_batch(batch)
        records = [s.obj for s in batch]
        groups = torch.tensor([int(s.group) for s in batch], dtype=torch.long)
        return records, {"groups": groups}


class GroupBalancedBatchSampler:
    """Batches of dataset indices with ``m_per_group`` items from each of ``batch_size //
    m_per_group`` distinct groups.

    - ``group_sampling="uniform"`` draws the groups of a batch uniformly, so rare groups are
      seen as often as common ones; ``"proportional"`` draws them in proportion to their
      size, keeping the data's mix (better when the metric averages over queries of common
      groups). Within a group, items come from a shuffled cycle: every item of a group is
      used once before any is used again.
    - A group with fewer than ``m_per_group`` items gives all of them (a single-item group
      gives only a negative). When there are fewer groups than a batch has room for, every
      batch holds all groups.
    - An epoch has as many batches as plain batching would (``ceil(len / batch_size)``).
      The order is a function of ``(seed, epoch)`` alone: the epoch advances on every
      iteration, or is set with ``set_epoch``.
    - Under ``torch.distributed`` each rank takes every ``world_size``-th batch of the same
      global order, so the ranks see disjoint batches. It does this itself: Lightning must
      not put a DistributedSampler in (``Trainer(use_distributed_sampler=False)``, which
      ``trainer_defaults`` sets for such loaders).
    """

    def __init__(
        self, groups: Sequence[int], batch_size: int, m_per_group: int, seed: int = 0, group_sampling: str = "uniform"
    ):
        if group_sampling not in ("uniform", "proportional"):
            raise DataError(f"group_sampling must be 'uniform' or 'proportional', got {group_sampling!r}")
        m_per_group = positive_int(m_per_group, "m_per_group", minimum=2, error=DataError,
                                   why="a batch needs two items of a group to hold a positive pair")
        batch_size = positive_int(batch_size, "batch_size", minimum=2 * m_per_group, error=DataError,
                                  why=f"a batch needs room for two groups of m_per_group={m_per_group}: use batch_size >= {2 * m_per_group}")
        groups_tensor = torch.as_tensor(list(groups), dtype=torch.long)
        self.m_per_group = m_per_group
        self.batch_size = batch_size
        self.seed = int(seed)
        self.epoch = 0
        self.num_items = len(groups_tensor)
        _, inverse = torch.unique(groups_tensor, return_inverse=True)
        order = torch.argsort(inverse, stable=True)
        counts = torch.bincount(inverse).tolist()
        self._members: list[torch.Tensor] = list(torch.split(order, counts))
        self.groups_per_batch = min(batch_size // m_per_group, len(self._members))
        self.group_sampling = group_sampling
        sizes = torch.tensor(counts, dtype=torch.float64)
        self._group_weights = sizes if group_sampling == "proportional" else torch.ones_like(sizes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _global_batches(self) -> int:
        _, world = rank_and_world()
        batches = -(-self.num_items // self.batch_size)
        return -(-batches // world) * world  # every rank gets the same number of steps

    def __len__(self) -> int:
        return self._global_batches() // rank_and_world()[1]

    def __iter__(self):
        rank, world = rank_and_world()
        epoch = self.epoch
        self.epoch += 1
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        cycles = [members[torch.randperm(len(members), generator=generator)] for members in self._members]
        cursor = [0] * len(cycles)
        for batch_number in range(self._global_batches()):
            chosen = torch.multinomial(self._group_weights, self.groups_per_batch, replacement=False, generator=generator)
            batch: list[int] = []
            for g in chosen.tolist():
                batch += self._take(cycles, cursor, g, generator)
            if batch_number % world == rank:
                yield batch

    def _take(self, cycles: list[torch.Tensor], cursor: list[int], g: int, generator: torch.Generator) -> list[int]:
        """The next ``m`` items of group ``g``'s cycle, reshuffling it when it runs out."""
        members = cycles[g]
        want = min(self.m_per_group, len(members))
        taken: list[int] = []
        while len(taken) < want:
            if cursor[g] == len(members):
                members = cycles[g] = members[torch.randperm(len(members), generator=generator)]
                cursor[g] = 0
            item = int(members[cursor[g]])
            cursor[g] += 1
            if item not in taken:  # a reshuffle may bring back an item already in this batch
                taken.append(item)
        return taken
