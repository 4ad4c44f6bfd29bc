import torch
from torch.nn import Parameter

from quaterion_models.heads.encoder_head import EncoderHead


class GatedHead(EncoderHead):
    """``x * tanh(gates)``, gates initialised to 2 (almost all components pass)."""

    def __init__(self, input_embedding_size: int, dropout: float = 0.0):
        super().__init__(input_embedding_size, dropout=dropout)
        self.gates = Parameter(torch.empty(input_embedding_size))
        self.reset_parameters()

    @property
    def output_size(self) -> int:
        return self.input_embedding_size

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        return input_vectors * torch.tanh(self.gates)

    def reset_parameters(self) -> None:
        torch.nn.init.constant_(self.gates, 2.0)
