"""SwitchEncoder: each record goes to one of several encoders of equal output size."""
from __future__ import annotations

import json
import os
from functools import partial
from typing import Any, Dict, List

import torch
from torch import Tensor

from quaterion_models.encoders.encoder import Encoder
from quaterion_models.types import CollateFnType, TensorInterchange
from quaterion_models.utils import restore_class, save_class_import


def inverse_permutation(perm: Tensor) -> Tensor:
    """``inv`` with ``inv[perm[i]] == i``."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv


class SwitchEncoder(Encoder):
    """Subclasses implement the classmethod ``encoder_selection(record) -> option key``."""

    @classmethod
    def encoder_selection(cls, record: Any) -> str:
        raise NotImplementedError()

    def __init__(self, options: Dict[str, Encoder]):
        super().__init__()
        if not options:
            raise ValueError("SwitchEncoder needs at least one option")
        self.options = dict(options)
        sizes = {key: enc.embedding_size for key, enc in self.options.items()}
        for key, encoder in self.options.items():
            self.add_module(key, encoder)
        if len(set(sizes.values())) != 1:
            raise RuntimeError(f"Alternative encoders have inconsistent output size: {sizes}")
        self._embedding_size = next(iter(sizes.values()))

    def disable_gradients_if_required(self) -> None:
        for encoder in self.options.values():
            encoder.disable_gradients_if_required()

    @property
    def trainable(self) -> bool:
        return any(encoder.trainable for encoder in self.options.values())

    @property
    def embedding_size(self) -> int:
        return self._embedding_size

    @classmethod
    def switch_collate_fn(cls, batch: List[Any], encoder_collates: Dict[str, CollateFnType]) -> TensorInterchange:
        grouped: Dict[str, list] = {key: [] for key in encoder_collates}
        ordering: Dict[str, List[int]] = {key: [] for key in encoder_collates}
        for position, record in enumerate(batch):
            key = cls.encoder_selection(record)
            if key not in grouped:
                raise KeyError(f"encoder_selection chose {key!r}, not one of {sorted(grouped)}")
            grouped[key].append(record)
            ordering[key].append(position)
        batches = {key: encoder_collates[key](records) for key, records in grouped.items() if records}
        return {"ordering": ordering, "batches": batches}

    def get_collate_fn(self) -> CollateFnType:
        return partial(
            self.__class__.switch_collate_fn,
            encoder_collates={key: enc.get_collate_fn() for key, enc in self.options.items()},
        )

    @classmethod
    def extract_meta(cls, batch: List[Any]) -> List[dict]:
        return [{"encoder": cls.encoder_selection(record)} for record in batch]

    def forward(self, batch: TensorInterchange) -> Tensor:
        outputs, positions = [], []
        for key, sub_batch in batch["batches"].items():
            outputs.append(self.options[key](sub_batch))
            positions.extend(batch["ordering"][key])
        stacked = torch.cat(outputs)
        order = inverse_permutation(torch.tensor(positions, dtype=torch.long, device=stacked.device))
        return stacked[order]

    def save(self, output_path: str) -> None:
        records = {}
        for key, encoder in self.options.items():
            records[key] = save_class_import(encoder)
            path = os.path.join(output_path, key)
            os.makedirs(path, exist_ok=True)
            encoder.save(path)
        with open(os.path.join(output_path, "config.json"), "w") as fh:
            json.dump({"encoders": records}, fh, indent=2)

    @classmethod
    def load(cls, input_path: str) -> "Encoder":
        with open(os.path.join(input_path, "config.json")) as fh:
            config = json.load(fh)
        options = {
            key: restore_class(record).load(os.path.join(input_path, key))
            for key, record in config["encoders"].items()
        }
        return cls(options=options)
