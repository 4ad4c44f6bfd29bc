"""Small encoders for tests that need an encoder of a kind the built-in plugins do not offer."""
from __future__ import annotations

import torch
from torch import nn

from simplug.encoder import Encoder


class CharCodeEncoder(Encoder):
    """A text encoder whose collate tokenizes strings (character codes), like a real text
    encoder: its objects are strings, never tensors."""

    trainable = False
    embedding_size = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
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
