from simplug import hookimpl


@hookimpl
def register_heads(register):
    register("projection", "simplug_test_head.head:ProjectionHead", summary="linear projection, optionally L2-normalised")
