"""SwitchHead: each row goes through the head named by its meta's ``"encoder"`` entry."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import torch

from quaterion_models.encoders.switch_encoder import inverse_permutation
from quaterion_models.heads.encoder_head import CONFIG, WEIGHTS, EncoderHead, load_state
from quaterion_models.utils import restore_class, save_class_import


class SwitchHead(EncoderHead):
    def __init__(self, options: Dict[str, EncoderHead], input_embedding_size: int, **kwargs):
        super().__init__(input_embedding_size, dropout=0.0, **kwargs)
        self._heads = dict(options)
        for key, head in self._heads.items():
            self.add_module(key, head)

    @property
    def output_size(self) -> int:
        return next(iter(self._heads.values())).output_size

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("SwitchHead routes rows by meta: call forward(input_vectors, meta)")

    def forward(self, input_vectors: torch.Tensor, meta: Optional[List[Any]] = None) -> torch.Tensor:
        if meta is None:
            raise ValueError("SwitchHead needs the batch's meta (one {'encoder': key} per row)")
        x = self.dropout(input_vectors)
        outputs, positions = [], []
        for key, head in self._heads.items():
            rows = [i for i, m in enumerate(meta) if m["encoder"] == key]
            if not rows:
                continue
            index = torch.tensor(rows, dtype=torch.long, device=x.device)
            outputs.append(head.transform(x[index]))
            positions.extend(rows)
        order = inverse_permutation(torch.tensor(positions, dtype=torch.long, device=x.device))
        return torch.cat(outputs)[order]

    def get_config_dict(self) -> Dict[str, Any]:
        return {
            "heads": {k: {"config": v.get_config_dict(), "class": save_class_import(v)} for k, v in self._heads.items()},
            "input_embedding_size": self.input_embedding_size,
        }

    @classmethod
    def load(cls, input_path: str) -> "SwitchHead":
        with open(os.path.join(input_path, CONFIG)) as fh:
            config = json.load(fh)
        heads = {key: restore_class(rec["class"])(**rec["config"]) for key, rec in config.pop("heads").items()}
        head = cls(options=heads, **config)
        head.load_state_dict(load_state(os.path.join(input_path, WEIGHTS)))
        return head
