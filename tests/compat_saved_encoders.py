"""An encoder class named by the models in compat_data/, which the original quaterion-models 0.1.19
saved (see compat_data/README.md). Importable under both the original and the compat distribution."""
import json
import os

import torch
from quaterion_models.encoders import Encoder


class TinyVectorEncoder(Encoder):
    def __init__(self, in_size: int = 3, out_size: int = 4):
        super().__init__()
        self.in_size, self.out_size = in_size, out_size
        self.linear = torch.nn.Linear(in_size, out_size)

    @property
    def trainable(self) -> bool:
        return False

    @property
    def embedding_size(self) -> int:
        return self.out_size

    def get_collate_fn(self):
        return collate_vectors

    def forward(self, batch):
        return torch.tanh(self.linear(batch))

    def save(self, output_path: str) -> None:
        torch.save(self.state_dict(), os.path.join(output_path, "state.pt"))
        with open(os.path.join(output_path, "sizes.json"), "w") as fh:
            json.dump({"in_size": self.in_size, "out_size": self.out_size}, fh)

    @classmethod
    def load(cls, input_path: str) -> "TinyVectorEncoder":
        with open(os.path.join(input_path, "sizes.json")) as fh:
            encoder = cls(**json.load(fh))
        encoder.load_state_dict(torch.load(os.path.join(input_path, "state.pt"), weights_only=True))
        return encoder


def collate_vectors(batch):
    return torch.tensor([[float(v) for v in record] for record in batch])
