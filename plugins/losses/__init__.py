"""Built-in losses."""
from simplug import hookimpl

_LOSSES = [
    ("contrastive", "contrastive:ContrastiveLoss",
     "pairs: pull similar pairs together, push others beyond a margin"),
    ("multiple_negatives_ranking", "multiple_negatives_ranking:MultipleNegativesRankingLoss",
     "pairs: softmax over in-batch candidates (InfoNCE), optionally symmetric"),
    ("cosent", "cosent:CoSENTLoss",
     "pairs: learns the order of graded scores (CoSENT)"),
    ("cosine_similarity", "cosine_similarity:CosineSimilarityLoss",
     "pairs: regression of the cosine similarity onto the graded score"),
    ("triplet", "triplet:TripletLoss",
     "groups: triplet margin loss with hard / all / semi_hard mining"),
    ("online_contrastive", "online_contrastive:OnlineContrastiveLoss",
     "groups: contrastive loss over in-batch pairs, hard or all mining"),
    ("arcface", "arcface:ArcFaceLoss",
     "groups: additive angular margin over learned group weights (ArcFace)"),
    ("cosface", "cosface:CosFaceLoss",
     "groups: additive cosine margin over learned group weights (CosFace)"),
    ("softmax", "softmax:SoftmaxLoss",
     "groups: cross entropy of a linear classifier over the groups"),
    ("circle", "circle:CircleLoss",
     "groups: circle loss with self-paced pair weights"),
    ("fast_ap", "fast_ap:FastAPLoss",
     "groups: 1 - differentiable average precision (FastAP)"),
    ("center", "center:CenterLoss",
     "groups: distance of each embedding to its learned group centre"),
    ("supervised_contrastive", "supervised_contrastive:SupervisedContrastiveLoss",
     "groups: softmax over in-batch candidates with every same-group one a positive (SupCon)"),
    ("pml", "pml:PytorchMetricLearningWrapper",
     "groups: any pytorch-metric-learning loss (and miner) by name"),
]


@hookimpl
def register_losses(register):
    for name, target, summary in _LOSSES:
        register(name, f"simplug.plugins.losses.{target}", summary=summary)
