"""Built-in heads."""
from simplug import hookimpl


@hookimpl
def register_heads(register):
    register("empty", "simplug.plugins.heads.empty:EmptyHead", summary="identity: the encoders' embeddings as they are")
    register(
        "skip_connection",
        "simplug.plugins.heads.skip_connection:SkipConnectionHead",
        summary="gated residual linear layers: x + sigmoid(g) * fc(x)",
    )
