from simplug import hookimpl


@hookimpl
def register_losses(register):
    register(
        "sigmoid_pairs",
        "simplug_sigmoid_loss.loss:SigmoidPairLoss",
        summary="pairs: independent sigmoid per (a, b) candidate in the batch (SigLIP), graded scores",
    )
