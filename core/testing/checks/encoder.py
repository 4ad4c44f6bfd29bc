"""The conformance check of a encoder."""
from __future__ import annotations

import os
import tempfile
from typing import Any, Sequence

import torch
from simplug.components.encoder import Encoder
from simplug.testing.checks.common import (
    check_gradients,
    fail,
    label_of,
    shape_of,
    step,
)


def check_encoder(encoder: Any, inputs: Sequence[Any], name: str | None = None) -> None:
    """Collate + forward shape equals ``embedding_size``, deterministic eval, save/load round trip.

    ``inputs`` are a few raw objects of the kind the encoder reads (texts, tensors, ...).
    """

    label = label_of("encoder", encoder, name)
    if not isinstance(encoder, Encoder):
        fail(f"{label} is a {type(encoder).__name__}, not a simplug.components.encoder.Encoder subclass")
    inputs = list(inputs)
    if len(inputs) < 2:
        raise ValueError("check_encoder needs at least two sample inputs")
    with step(label, "embedding_size / trainable"):
        size, trainable = encoder.embedding_size, encoder.trainable
    if not isinstance(size, int) or size <= 0:
        fail(f"{label}: embedding_size is {size!r}, not a positive int")
    if not isinstance(trainable, bool):
        fail(f"{label}: trainable is {trainable!r}, not a bool")
    with step(label, "get_collate_fn()"):
        collate = encoder.get_collate_fn()
    with step(label, f"its collate function on {len(inputs)} inputs"):
        batch = collate(inputs)
    encoder.eval()
    with step(label, "forward on a collated batch"), torch.no_grad():
        output = encoder(batch)
        second = encoder(collate(inputs))
    if not isinstance(output, torch.Tensor):
        fail(f"{label}: forward returned a {type(output).__name__}, not a tensor")
    if shape_of(output) != (len(inputs), size):
        fail(f"{label} output has shape {shape_of(output)} for {len(inputs)} inputs but embedding_size is "
              f"{size} (expected {(len(inputs), size)})")
    if not torch.isfinite(output).all():
        fail(f"{label}: output has NaN or inf values")
    if not torch.equal(output, second):
        fail(f"{label}: two forward passes in eval mode give different embeddings; frozen encoders are "
              "cached on that assumption")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "encoder")
        with step(label, f"save({path!r})"):
            encoder.save(path)
        with step(label, f"{type(encoder).__name__}.load({path!r})"):
            loaded = type(encoder).load(path)
    if not isinstance(loaded, type(encoder)):
        fail(f"{label}: load() returned a {type(loaded).__name__}, not a {type(encoder).__name__}")
    if (loaded.embedding_size, loaded.trainable) != (size, trainable):
        fail(f"{label}: after save/load embedding_size, trainable are {(loaded.embedding_size, loaded.trainable)} "
              f"instead of {(size, trainable)}")
    loaded.eval()
    with step(label, "forward after save/load"), torch.no_grad():
        reloaded = loaded(loaded.get_collate_fn()(inputs))
    if shape_of(reloaded) != shape_of(output) or not torch.equal(reloaded, output):
        fail(f"{label}: save/load is not bit-identical: the loaded encoder gives other embeddings for "
              "the same inputs")

    if trainable:
        encoder.train()
        encoder.zero_grad(set_to_none=True)
        with step(label, "forward in train mode"):
            output = encoder(collate(inputs))
        with step(label, "backward"):
            check_gradients(label, encoder, None, output)
        encoder.zero_grad(set_to_none=True)
        encoder.eval()
    else:
        encoder.disable_gradients_if_required()
        trainable_params = [n for n, p in encoder.named_parameters() if p.requires_grad]
        if trainable_params:
            fail(f"{label} says trainable=False but parameters {trainable_params} still require grad")
