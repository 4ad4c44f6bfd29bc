"""Built-in encoders."""
from simplug import hookimpl


@hookimpl
def register_encoders(register):
    register(
        "torch_module",
        "simplug.plugins.encoders.torch_module:TorchModuleEncoder",
        summary="wraps any torch.nn.Module that maps a tensor batch to embeddings",
    )
    register(
        "sentence_transformer",
        "simplug.plugins.encoders.sentence_transformer:SentenceTransformerEncoder",
        summary="text: a local sentence-transformers model (default all-MiniLM-L6-v2), frozen or partly trainable",
    )
