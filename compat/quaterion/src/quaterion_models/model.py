"""SimilarityModel with the original's interface and saved format.

Saved layout (the original's): ``config.json`` = ``{"encoders": [{"key", "module", "class"}, ...],
"head": {"module", "class"}}``, ``head/`` (the head's ``save``), ``encoders/<key>/`` (each encoder's
``save``). ``load`` imports the classes named there, as the original did; use
:func:`quaterion_models.convert.convert_quaterion_model` to turn such a directory into a simplug
model that ``simplug serve`` loads.
"""
from __future__ import annotations

import json
import os
from functools import partial
from typing import Any, Callable, Dict, List, Union

import numpy as np
import torch
from torch import nn

from quaterion_models.encoders import Encoder
from quaterion_models.heads.encoder_head import EncoderHead
from quaterion_models.types import CollateFnType, MetaExtractorFnType, TensorInterchange
from quaterion_models.utils.classes import restore_class, save_class_import
from quaterion_models.utils.meta import merge_meta
from quaterion_models.utils.tensors import move_to_device

DEFAULT_ENCODER_KEY = "default"
CONFIG_FILE = "config.json"


class SimilarityModel(nn.Module):
    """Encoders (one, or a dict of named ones) whose outputs are concatenated in key order, then the head."""

    def __init__(self, encoders: Union[Encoder, Dict[str, Encoder]], head: EncoderHead):
        super().__init__()
        if not isinstance(encoders, dict):
            encoders = {DEFAULT_ENCODER_KEY: encoders}
        self.encoders: Dict[str, Encoder] = dict(encoders)
        for key, encoder in self.encoders.items():
            encoder.disable_gradients_if_required()
            self.add_module(key, encoder)
        self.head = head

    @classmethod
    def collate_fn(cls, batch: List[Any], encoders_collate_fns: Dict[str, CollateFnType],
                   meta_extractors: Dict[str, MetaExtractorFnType]) -> TensorInterchange:
        data = {key: fn(batch) for key, fn in encoders_collate_fns.items()}
        meta = {key: fn(batch) for key, fn in meta_extractors.items()}
        return {"data": data, "meta": merge_meta(meta)}

    @classmethod
    def get_encoders_output_size(cls, encoders: Union[Encoder, Dict[str, Encoder]]) -> int:
        values = encoders.values() if isinstance(encoders, dict) else [encoders]
        return sum(encoder.embedding_size for encoder in values)

    def get_collate_fn(self) -> Callable:
        """A picklable function turning a list of records into the model's input."""
        return partial(
            SimilarityModel.collate_fn,
            encoders_collate_fns={key: enc.get_collate_fn() for key, enc in self.encoders.items()},
            meta_extractors={key: enc.get_meta_extractor() for key, enc in self.encoders.items()},
        )

    def encode(self, inputs: Union[List[Any], Any], batch_size: int = 32, to_numpy: bool = True
               ) -> Union[torch.Tensor, np.ndarray]:
        """Embeddings of ``inputs`` (a list, or one record) in eval mode without gradients."""
        self.eval()
        device = next(self.parameters(), torch.tensor(0)).device
        collate = self.get_collate_fn()
        was_list = isinstance(inputs, list)
        records = inputs if was_list else [inputs]
        parts = []
        for start in range(0, len(records), batch_size):
            features = move_to_device(collate(records[start:start + batch_size]), device)
            with torch.no_grad():
                out = self.forward(features).detach()
            parts.append(out.cpu().numpy() if to_numpy else out)
        if not parts:
            size = self.head.output_size
            return np.zeros((0, size), dtype=np.float32) if to_numpy else torch.zeros(0, size)
        result = np.concatenate(parts, axis=0) if to_numpy else torch.cat(parts, dim=0)
        if not was_list:
            result = result.squeeze()
        return np.atleast_2d(result) if to_numpy else torch.atleast_2d(result)

    def forward(self, batch: Dict[str, Any]) -> torch.Tensor:
        embeddings = [self.encoders[key](batch["data"][key]) for key in sorted(self.encoders)]
        return self.head(torch.cat(embeddings, dim=1), meta=batch.get("meta"))

    @classmethod
    def _get_head_path(cls, directory: str) -> str:
        return os.path.join(directory, "head")

    @classmethod
    def _get_encoders_path(cls, directory: str) -> str:
        return os.path.join(directory, "encoders")

    def save(self, output_path: str) -> None:
        head_path = self._get_head_path(output_path)
        os.makedirs(head_path, exist_ok=True)
        self.head.save(head_path)
        encoders_path = self._get_encoders_path(output_path)
        os.makedirs(encoders_path, exist_ok=True)
        records = []
        for key, encoder in self.encoders.items():
            path = os.path.join(encoders_path, key)
            os.makedirs(path, exist_ok=True)
            encoder.save(path)
            records.append({"key": key, **save_class_import(encoder)})
        with open(os.path.join(output_path, CONFIG_FILE), "w") as fh:
            json.dump({"encoders": records, "head": save_class_import(self.head)}, fh, indent=2)

    def to_simplug(self):
        """This model as a ``simplug.serving.SimilarityModel`` (sharing its modules), whose ``save``
        writes a directory that ``simplug serve`` loads, recording the drop-in's heads as plugins."""
        from quaterion_models.convert import to_simplug_model

        return to_simplug_model(self.encoders, self.head)

    @classmethod
    def load(cls, input_path: str) -> "SimilarityModel":
        """Rebuild a saved model, importing the encoder and head classes its config names."""
        config_path = os.path.join(input_path, CONFIG_FILE)
        if not os.path.exists(config_path) and os.path.exists(os.path.join(input_path, "manifest.json")):
            raise ValueError(f"{input_path} is a simplug model: load it with simplug.serving.SimilarityModel.load")
        with open(config_path) as fh:
            config = json.load(fh)
        head = restore_class(config["head"]).load(cls._get_head_path(input_path))
        encoders = {
            rec["key"]: restore_class(rec).load(os.path.join(cls._get_encoders_path(input_path), rec["key"]))
            for rec in config["encoders"]
        }
        return cls(encoders=encoders, head=head)


MetricModel = SimilarityModel
