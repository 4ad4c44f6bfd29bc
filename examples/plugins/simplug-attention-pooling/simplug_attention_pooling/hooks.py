from simplug import hookimpl


@hookimpl
def register_heads(register):
    register(
        "attention_pooling",
        "simplug_attention_pooling.head:AttentionPoolingHead",
        summary="self-attention over several encoders' embeddings, pooled by learned attention",
    )
