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
    register(
        "blend",
        "simplug.plugins.heads.blend:BlendHead",
        summary="weighted sum of the encoder's cosine, a trained projection's and soft group assignments'",
    )
    register("gated", "simplug.plugins.heads.gated:GatedHead", summary="per-dimension gates: x * tanh(g)")
    register(
        "softmax_embeddings",
        "simplug.plugins.heads.softmax_embeddings:SoftmaxEmbeddingsHead",
        summary="linear layer, softmax within each of output_groups groups, concatenated",
    )
    register(
        "stacked_projection",
        "simplug.plugins.heads.stacked_projection:StackedProjectionHead",
        summary="linear layers to output_sizes with an activation between them",
    )
    register(
        "widening",
        "simplug.plugins.heads.widening:WideningHead",
        summary="in -> in * expansion_factor -> activation -> in",
    )
    register(
        "sequential",
        "simplug.plugins.heads.sequential:SequentialHead",
        summary="torch.nn layers and registered heads in turn, described in the config (no pickle)",
    )
    register(
        "switch",
        "simplug.plugins.heads.switch:SwitchHead",
        summary="routes each record to one of several heads or layers by a key in the record",
    )
