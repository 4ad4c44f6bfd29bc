"""Small text encoders for tests that need an encoder of a kind the built-in plugins do not offer."""
from __future__ import annotations

import torch
from torch import nn

from simplug.components.encoder import Encoder


class _ToyTextEncoder(Encoder):
    trainable = False
    embedding_size = 8

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)


class CharCodeEncoder(_ToyTextEncoder):
    """A text encoder whose collate tokenizes strings (character codes), like a real text
    encoder: its objects are strings, never tensors."""

    def __init__(self):
        super().__init__(seed=5)
        self.embed = nn.EmbeddingBag(128, 8)

    def get_collate_fn(self):
        def tokenize(texts):
            for i, text in enumerate(texts):
                if not isinstance(text, str):
                    raise TypeError(f"object {i} is a {type(text).__name__}; this encoder takes strings")
            ids = [torch.tensor([min(ord(c), 127) for c in t] or [0]) for t in texts]
            return torch.cat(ids), torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)

        return tokenize

    def forward(self, batch):
        ids, offsets = batch
        return self.embed(ids, offsets)


class PaddedCharEncoder(_ToyTextEncoder):
    """A text encoder whose collate gives a tokenizer-like dict (``input_ids``,
    ``attention_mask``), with masked mean pooling: exportable by those tensors."""

    def __init__(self):
        super().__init__(seed=6)
        self.embed = nn.Embedding(128, 8)
        self.mix = nn.Linear(8, 8)

    def get_collate_fn(self):
        def tokenize(texts):
            ids = [[min(ord(c), 127) for c in t] or [0] for t in texts]
            width = max(len(i) for i in ids)
            return {
                "input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
                "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids]),
            }

        return tokenize

    def export_example_objects(self):
        return ["a", "two words", "a sentence that is rather longer", "mid length", "xyz"]

    def forward(self, batch):
        mask = batch["attention_mask"].unsqueeze(-1).to(self.embed.weight.dtype)
        tokens = torch.tanh(self.mix(self.embed(batch["input_ids"])))
        return (tokens * mask).sum(1) / mask.sum(1).clamp(min=1.0)
