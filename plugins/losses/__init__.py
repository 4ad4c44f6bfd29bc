"""Built-in losses."""
from simplug import hookimpl


@hookimpl
def register_losses(register):
    register(
        "contrastive",
        "simplug.plugins.losses.contrastive:ContrastiveLoss",
        summary="pairs: pull similar pairs together, push others beyond a margin",
    )
    register(
        "multiple_negatives_ranking",
        "simplug.plugins.losses.multiple_negatives_ranking:MultipleNegativesRankingLoss",
        summary="pairs: softmax over in-batch candidates (InfoNCE), optionally symmetric",
    )
    register(
        "triplet",
        "simplug.plugins.losses.triplet:TripletLoss",
        summary="groups: triplet margin loss with hard / all / semi_hard mining",
    )
    register(
        "supervised_contrastive",
        "simplug.plugins.losses.supervised_contrastive:SupervisedContrastiveLoss",
        summary="groups: softmax over the batch with every same-group item as a positive (SupCon), temperature",
    )
