"""The conformance check of a distance."""
from __future__ import annotations

from typing import Any

import torch
from simplug.components.distance import Distance
from simplug.testing.checks.common import fail, generator, label_of, shape_of, step


def check_distance(distance: Any, name: str | None = None, dim: int = 6) -> None:
    """The matrix and row forms agree, similarity falls as distance grows, finite gradients."""

    label = label_of("distance", distance, name)
    if not isinstance(distance, Distance):
        fail(f"{label} is a {type(distance).__name__}, not a simplug.components.distance.Distance subclass")
    x = torch.randn(5, dim, generator=generator())
    y = torch.randn(4, dim, generator=generator(2))
    forms = {}
    for form, call in (
        ("distance_matrix(x, y)", lambda: distance.distance_matrix(x, y)),
        ("similarity_matrix(x, y)", lambda: distance.similarity_matrix(x, y)),
        ("distance_matrix(x)", lambda: distance.distance_matrix(x)),
        ("similarity_matrix(x)", lambda: distance.similarity_matrix(x)),
    ):
        with step(label, form):
            forms[form] = call()
    for form, expected in (("distance_matrix(x, y)", (5, 4)), ("similarity_matrix(x, y)", (5, 4)),
                           ("distance_matrix(x)", (5, 5)), ("similarity_matrix(x)", (5, 5))):
        if shape_of(forms[form]) != expected:
            fail(f"{label}: {form} has shape {shape_of(forms[form])} for x {tuple(x.shape)}, y {tuple(y.shape)}; "
                  f"expected {expected}")
    rows_x = x.repeat_interleave(4, dim=0)
    rows_y = y.repeat(5, 1)
    for row_form, matrix_form, call in (
        ("distance", "distance_matrix(x, y)", distance.distance),
        ("similarity", "similarity_matrix(x, y)", distance.similarity),
    ):
        with step(label, f"{row_form}(x_rows, y_rows)"):
            rows = call(rows_x, rows_y)
        if shape_of(rows) != (20,):
            fail(f"{label}: {row_form}(a, b) on (20, {dim}) inputs has shape {shape_of(rows)}, expected (20,)")
        matrix = forms[matrix_form].reshape(-1)
        if not torch.allclose(rows, matrix, rtol=1e-4, atol=1e-5):
            worst = int((rows - matrix).abs().argmax())
            fail(f"{label}: the matrix and row forms disagree: {matrix_form}[{worst // 4}, {worst % 4}] is "
                  f"{matrix[worst].item():.6g} but {row_form}(x[{worst // 4}], y[{worst % 4}]) is "
                  f"{rows[worst].item():.6g}")
    if not torch.allclose(forms["distance_matrix(x)"], distance.distance_matrix(x, x), rtol=1e-4, atol=1e-5):
        fail(f"{label}: distance_matrix(x) differs from distance_matrix(x, x)")
    d, s = forms["distance_matrix(x, y)"], forms["similarity_matrix(x, y)"]
    closer = d.unsqueeze(2) < d.unsqueeze(1) - 1e-5  # [i, j, k]: j is nearer to x[i] than k
    if (closer & ~(s.unsqueeze(2) > s.unsqueeze(1))).any():
        fail(f"{label}: similarity does not fall as distance grows: for some row a nearer candidate "
              "(smaller distance) has no larger similarity")
    dup = torch.cat([x, x[:2]]).requires_grad_(True)
    with step(label, "backward through distance_matrix with duplicate rows"):
        distance.distance_matrix(dup).sum().backward()
    if dup.grad is None or not torch.isfinite(dup.grad).all():
        fail(f"{label}: distance_matrix gives non-finite (or no) gradients when two rows coincide; "
              "losses backpropagate through it")
