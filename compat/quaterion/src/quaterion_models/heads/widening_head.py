from typing import Any, Dict

from quaterion_models.heads.stacked_projection_head import StackedProjectionHead


class WideningHead(StackedProjectionHead):
    """in -> in * expansion_factor -> activation -> in."""

    def __init__(self, input_embedding_size: int, expansion_factor: float = 4.0, activation_fn: str = "relu",
                 dropout: float = 0.0, **kwargs):
        self._expansion_factor = expansion_factor
        super().__init__(
            input_embedding_size=input_embedding_size,
            output_sizes=[int(input_embedding_size * expansion_factor), input_embedding_size],
            activation_fn=activation_fn,
            dropout=dropout,
        )

    def get_config_dict(self) -> Dict[str, Any]:
        return {"input_embedding_size": self.input_embedding_size, "dropout": self._dropout_prob,
                "expansion_factor": self._expansion_factor, "activation_fn": self._activation_fn}
