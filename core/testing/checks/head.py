"""The conformance check of a head."""
from __future__ import annotations

import tempfile
from typing import Any

import torch
from simplug.components.head import EncoderHead
from simplug.testing.checks.common import (
    check_gradients,
    check_same_parameters,
    fail,
    generator,
    label_of,
    rebuild,
    save_and_load_state,
    shape_of,
    step,
)


def check_head(head: Any, name: str | None = None, batch_size: int = 8) -> None:
    """Output shape, ``get_config_dict`` round trip, save/load bit-identical, gradients flow."""

    label = label_of("head", head, name)
    if not isinstance(head, EncoderHead):
        fail(f"{label} is a {type(head).__name__}, not a simplug.components.head.EncoderHead subclass")
    size = head.input_embedding_size
    with step(label, "output_size"):
        output_size = head.output_size
    if not isinstance(output_size, int) or output_size <= 0:
        fail(f"{label}: output_size is {output_size!r}, not a positive int")
    inputs = torch.randn(batch_size, size, generator=generator())
    head.eval()
    with step(label, f"forward on a {(batch_size, size)} batch"), torch.no_grad():
        output = head(inputs)
    if not isinstance(output, torch.Tensor):
        fail(f"{label}: forward returned a {type(output).__name__}, not a tensor")
    if shape_of(output) != (batch_size, output_size):
        fail(f"{label} output has shape {shape_of(output)} but output_size is {output_size} "
              f"(input batch {(batch_size, size)}, so the output must be {(batch_size, output_size)})")
    if not torch.isfinite(output).all():
        fail(f"{label}: output has NaN or inf values for a normal random input")
    with torch.no_grad():
        if not torch.equal(head(inputs), output):
            fail(f"{label}: two forward passes in eval mode give different outputs; eval must be deterministic")

    rebuilt = rebuild(label, head)
    check_same_parameters(label, head, rebuilt)

    with tempfile.TemporaryDirectory() as tmp:
        save_and_load_state(label, head, rebuilt, tmp)
    rebuilt.eval()
    with step(label, "forward after save/load"), torch.no_grad():
        reloaded = rebuilt(inputs)
    if shape_of(reloaded) != shape_of(output) or not torch.equal(reloaded, output):
        delta = (reloaded - output).abs().max().item() if shape_of(reloaded) == shape_of(output) else "n/a"
        fail(f"{label}: save/load is not bit-identical: rebuilt from get_config_dict() with its saved "
              f"weights, the output differs (max abs difference {delta}); keep all state in parameters "
              "or persistent buffers and every constructor argument in get_config_dict()")

    head.train()
    grad_inputs = inputs.clone().requires_grad_(True)
    head.zero_grad(set_to_none=True)
    with step(label, "forward in train mode"):
        output = head(grad_inputs)
    with step(label, "backward"):
        check_gradients(label, head, grad_inputs, output)
    head.zero_grad(set_to_none=True)
    head.eval()
