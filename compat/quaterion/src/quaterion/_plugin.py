"""simplug entry point (group ``simplug``, name ``quaterion``): the original's components, with its
numerics, under ``quaterion_*`` names, so that they never clash with simplug's built-ins.

Registered lazily (``"module:attr"``): listing plugins does not import torch.
"""
from quaterion._simplug import hookimpl

_HEADS = {
    "quaterion_empty": ("quaterion_models.heads.empty_head:EmptyHead", "identity (quaterion-models)"),
    "quaterion_gated": ("quaterion_models.heads.gated_head:GatedHead", "x * tanh(gates) (quaterion-models)"),
    "quaterion_skip_connection": ("quaterion_models.heads.skip_connection_head:SkipConnectionHead",
                                  "gated residual linear layers (quaterion-models)"),
    "quaterion_softmax_embeddings": ("quaterion_models.heads.softmax_head:SoftmaxEmbeddingsHead",
                                     "softmax per output group (quaterion-models)"),
    "quaterion_stacked_projection": ("quaterion_models.heads.stacked_projection_head:StackedProjectionHead",
                                     "stack of linear layers (quaterion-models)"),
    "quaterion_widening": ("quaterion_models.heads.widening_head:WideningHead",
                           "in -> in*f -> in (quaterion-models)"),
}
_LOSSES = {
    "quaterion_triplet": ("quaterion.loss.triplet_loss:TripletLoss",
                          "groups: the original's triplet loss (hard mining divides by mean(d_neg))"),
    "quaterion_online_contrastive": ("quaterion.loss.online_contrastive_loss:OnlineContrastiveLoss",
                                     "groups: the original's online contrastive loss"),
    "quaterion_contrastive": ("quaterion.loss.contrastive_loss:ContrastiveLoss",
                              "pairs: the original's contrastive loss"),
    "quaterion_multiple_negatives_ranking": (
        "quaterion.loss.multiple_negatives_ranking_loss:MultipleNegativesRankingLoss",
        "pairs: the original's MNRL (logits scale * (cos + 1) / 2)"),
    "quaterion_arcface": ("quaterion.loss.arcface_loss:ArcFaceLoss", "groups: the original's ArcFace"),
    "quaterion_cosface": ("quaterion.loss.cos_face_loss:CosFaceLoss",
                          "groups: CosFace with the original's parameters"),
    "quaterion_softmax": ("quaterion.loss.softmax_loss:SoftmaxLoss", "groups: the original's softmax loss"),
    "quaterion_circle": ("quaterion.loss.circle_loss:CircleLoss", "groups: the original's circle loss"),
    "quaterion_center": ("quaterion.loss.center_loss:CenterLoss", "groups: the original's center loss"),
}
_DISTANCES = {
    "quaterion_cosine": ("quaterion.distances.cosine:Cosine", "the original's cosine: matrices in 0..1"),
    "quaterion_euclidean": ("quaterion.distances.euclidean:Euclidean", "the original's euclidean"),
    "quaterion_manhattan": ("quaterion.distances.manhattan:Manhattan", "the original's manhattan"),
    "quaterion_dot_product": ("quaterion.distances.dot_product:DotProduct", "the original's dot product"),
}
_METRICS = {
    "quaterion_retrieval_precision": ("quaterion.eval.pair.retrieval_precision:RetrievalPrecision",
                                      "pairs: the original's retrieval precision@k"),
    "quaterion_retrieval_reciprocal_rank": (
        "quaterion.eval.pair.retrieval_reciprocal_rank:RetrievalReciprocalRank",
        "pairs: the original's reciprocal rank (every relevant hit)"),
    "quaterion_retrieval_r_precision": ("quaterion.eval.group.retrieval_r_precision:RetrievalRPrecision",
                                        "groups: the original's R-precision"),
}


def _register_all(register, table):
    for name, (target, summary) in table.items():
        register(name, target, summary=summary)


@hookimpl
def register_heads(register):
    _register_all(register, _HEADS)


@hookimpl
def register_losses(register):
    _register_all(register, _LOSSES)


@hookimpl
def register_distances(register):
    _register_all(register, _DISTANCES)


@hookimpl
def register_metrics(register):
    _register_all(register, _METRICS)
