"""The conformance check of a loss."""
from __future__ import annotations

from typing import Any

import torch
from simplug.components.loss import SimilarityLoss
from simplug.testing.checks.common import (
    check_same_parameters,
    fail,
    generator,
    group_targets,
    label_of,
    pair_targets,
    rebuild,
    shape_of,
    step,
)


def check_loss(loss: Any, name: str | None = None, embedding_size: int = 8, batch_size: int = 12) -> None:
    """Finite scalar, gradients flow, the pair/group contract, ``get_config_dict`` round trip."""

    label = label_of("loss", loss, name)
    if not isinstance(loss, SimilarityLoss):
        fail(f"{label} is a {type(loss).__name__}, not a simplug.components.loss.SimilarityLoss "
              "(subclass PairwiseLoss or GroupLoss)")
    kind = loss.target_kind
    if kind == "pairs":
        targets = pair_targets(batch_size // 2)
        call = "loss(embeddings, pairs=..., labels=..., subgroups=...)"
        what = "pair"
    elif kind == "groups":
        targets = group_targets(batch_size)
        call = "loss(embeddings, groups=...)"
        what = "group"
    else:
        fail(f"{label}: target_kind is {kind!r}; a loss is a pair loss ('pairs', subclass PairwiseLoss) "
              "or a group loss ('groups', subclass GroupLoss)")
    embeddings = torch.randn(batch_size, embedding_size, generator=generator())

    def evaluate(module: Any, emb: torch.Tensor, probe: str) -> torch.Tensor:
        try:
            value = module(emb, **targets)
        except TypeError as exc:
            fail(f"{label} is a {what} loss (target_kind={kind!r}) but cannot be called with {what} "
                  f"targets as the trainer does, {call}: {exc}")
        except Exception as exc:
            fail(f"{label} raised {type(exc).__name__} on {probe}: {exc}")
        if not isinstance(value, torch.Tensor):
            fail(f"{label} returned a {type(value).__name__} on {probe}, not a tensor")
        if value.dim() != 0:
            fail(f"{label} returned a tensor of shape {shape_of(value)} on {probe}; a loss must return "
                  "a scalar (reduce with mean or sum)")
        if not torch.isfinite(value):
            fail(f"{label} returned a non-finite value ({value.item()}) on {probe}")
        return value

    value = evaluate(loss, embeddings, f"{batch_size} random embeddings of size {embedding_size}")
    grad_embeddings = embeddings.clone().requires_grad_(True)
    value = evaluate(loss, grad_embeddings, "random embeddings")
    if not value.requires_grad:
        fail(f"{label}: the loss value does not require grad (detached from the embeddings); "
              "training would never change the model")
    with step(label, "backward"):
        value.backward()
    if grad_embeddings.grad is None or not torch.any(grad_embeddings.grad != 0):
        fail(f"{label}: no gradient flows back to the embeddings")
    if not torch.isfinite(grad_embeddings.grad).all():
        fail(f"{label}: the gradient to the embeddings is not finite")

    # two embeddings that coincide (a duplicate in the batch) must not give NaN gradients
    same = embeddings.clone()
    a, b = (targets["pairs"][0].tolist() if kind == "pairs" else (0, 1))
    same[b] = same[a]
    same.requires_grad_(True)
    value = evaluate(loss, same, "a batch where two embeddings coincide")
    with step(label, "backward with two coinciding embeddings"):
        value.backward()
    if same.grad is None or not torch.isfinite(same.grad).all():
        fail(f"{label}: the gradient is not finite when two embeddings coincide (a sqrt or norm at "
              "zero distance?)")

    rebuilt = rebuild(label, loss)
    # learned weights (class centres, ArcFace's class matrix) are state, not config: the
    # rebuilt loss starts from fresh random ones, so it gets the original's before comparing
    check_same_parameters(label, loss, rebuilt)
    with step(label, "load_state_dict() of its own state_dict() into the rebuilt loss"):
        rebuilt.load_state_dict(loss.state_dict(), strict=True)
    with torch.no_grad():
        first = evaluate(loss, embeddings, "random embeddings")
        again = evaluate(rebuilt, embeddings, "random embeddings, rebuilt from get_config_dict()")
    if not torch.allclose(first, again, rtol=1e-5, atol=1e-6):
        fail(f"{label}: get_config_dict() does not round-trip: rebuilt from it the loss gives "
              f"{again.item()} instead of {first.item()} on the same batch")
