"""Built-in distances, resolved by registered name, against slow independent references.

Contract (core/distance.py): ``distance_matrix(x, y)[i, j] == distance(x[i], y[j])`` and the
same for similarities; ``distance_matrix(x) == distance_matrix(x, x)``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simplug.registry import get_registry

NAMES = ("cosine", "euclidean", "manhattan", "dot_product")


def make(name):
    return get_registry().resolve("distances", name)()


# --------------------------------------------------------------------------- references
def _dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def ref_distance(name, u, v):
    """Distance between two plain Python float lists, written from the definitions."""
    if name == "cosine":
        nu = math.sqrt(_dot(u, u))
        nv = math.sqrt(_dot(v, v))
        return 1.0 - _dot(u, v) / (nu * nv)
    if name == "euclidean":
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v)))
    if name == "manhattan":
        return sum(abs(a - b) for a, b in zip(u, v))
    if name == "dot_product":
        return -_dot(u, v)
    raise AssertionError(name)


def ref_similarity(name, u, v):
    if name == "cosine":
        return 1.0 - ref_distance(name, u, v)
    if name in ("euclidean", "manhattan"):
        return 1.0 / (1.0 + ref_distance(name, u, v))
    if name == "dot_product":
        return _dot(u, v)
    raise AssertionError(name)


def ref_matrix(fn, name, x, y):
    xl, yl = x.tolist(), y.tolist()
    return torch.tensor([[fn(name, u, v) for v in yl] for u in xl], dtype=torch.float64)


def ref_rows(fn, name, x, y):
    return torch.tensor([fn(name, u, v) for u, v in zip(x.tolist(), y.tolist())], dtype=torch.float64)


def data(seed, n=7, m=None, d=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randn(n if m is None else m, d, generator=g, dtype=dtype)
    return x, y


# --------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name", NAMES)
def test_registered_name_resolves_to_distance(name):
    from simplug.components.distance import Distance, resolve_distance

    dist = make(name)
    assert isinstance(dist, Distance)
    assert dist.name == name
    assert type(resolve_distance(name)) is type(dist)


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", NAMES)
def test_distance_rows_match_reference_and_matrix_diagonal(name, seed):
    dist = make(name)
    x, y = data(seed)
    rows = dist.distance(x, y)
    expected = ref_rows(ref_distance, name, x, y)
    assert rows.shape == (len(x),)
    torch.testing.assert_close(rows, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dist.distance_matrix(x, y).diagonal(), rows, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", NAMES)
def test_distance_matrix_matches_reference(name, seed):
    dist = make(name)
    x, y = data(seed, n=6, m=4)  # rectangular on purpose
    mat = dist.distance_matrix(x, y)
    assert mat.shape == (6, 4)
    torch.testing.assert_close(mat, ref_matrix(ref_distance, name, x, y), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", NAMES)
def test_similarity_rows_and_matrix_match_reference(name, seed):
    dist = make(name)
    x, y = data(seed, n=6)
    rows = dist.similarity(x, y)
    torch.testing.assert_close(rows, ref_rows(ref_similarity, name, x, y), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dist.similarity_matrix(x, y).diagonal(), rows, rtol=1e-9, atol=1e-9)
    x2, y2 = data(seed + 10, n=5, m=3)
    torch.testing.assert_close(
        dist.similarity_matrix(x2, y2), ref_matrix(ref_similarity, name, x2, y2), rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("name", NAMES)
def test_smaller_distance_means_larger_similarity(name):
    dist = make(name)
    x, y = data(3, n=9, m=9)
    dm = dist.distance_matrix(x, y).flatten()
    sm = dist.similarity_matrix(x, y).flatten()
    order = dm.argsort()
    # similarity is a strictly decreasing function of distance
    assert bool((sm[order][1:] < sm[order][:-1]).all())


@pytest.mark.parametrize("name", NAMES)
def test_matrix_every_entry_equals_row_form(name):
    """distance_matrix(x, y)[i, j] == distance(x[i], y[j]) for every (i, j), not just the diagonal."""
    dist = make(name)
    x, y = data(4, n=4, m=5)
    dm = dist.distance_matrix(x, y)
    sm = dist.similarity_matrix(x, y)
    for i in range(len(x)):
        rows_d = dist.distance(x[i].expand(len(y), -1), y)
        rows_s = dist.similarity(x[i].expand(len(y), -1), y)
        torch.testing.assert_close(dm[i], rows_d, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(sm[i], rows_s, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_float32_agrees_with_float64_reference(name):
    dist = make(name)
    x, y = data(5, n=6, d=8, dtype=torch.float32)
    ref_d = ref_matrix(ref_distance, name, x, y).float()
    ref_s = ref_matrix(ref_similarity, name, x, y).float()
    torch.testing.assert_close(dist.distance_matrix(x, y), ref_d, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dist.similarity_matrix(x, y), ref_s, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dist.distance(x, y), ref_d.diagonal(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dist.similarity(x, y), ref_s.diagonal(), rtol=1e-4, atol=1e-4)


def test_matches_scipy_cdist_when_available():
    sp = pytest.importorskip("scipy.spatial.distance")
    x, y = data(6, n=5, m=4)
    xn, yn = x.numpy(), y.numpy()
    expected = {
        "cosine": sp.cdist(xn, yn, "cosine"),
        "euclidean": sp.cdist(xn, yn, "euclidean"),
        "manhattan": sp.cdist(xn, yn, "cityblock"),
        "dot_product": -(xn @ yn.T),
    }
    for name, exp in expected.items():
        got = make(name).distance_matrix(x, y).numpy()
        np.testing.assert_allclose(got, exp, rtol=1e-9, atol=1e-9, err_msg=name)


# --------------------------------------------------------------------------- one argument
@pytest.mark.parametrize("name", NAMES)
def test_one_argument_matrix_equals_self_matrix(name):
    dist = make(name)
    x, _ = data(7, n=6)
    torch.testing.assert_close(dist.distance_matrix(x), dist.distance_matrix(x, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(dist.similarity_matrix(x), dist.similarity_matrix(x, x), rtol=0, atol=1e-12)
    assert dist.distance_matrix(x).shape == (6, 6)
    torch.testing.assert_close(dist.distance_matrix(x), ref_matrix(ref_distance, name, x, x), rtol=1e-9, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_self_matrix_is_symmetric(name):
    dist = make(name)
    x, _ = data(8, n=6)
    dm = dist.distance_matrix(x)
    torch.testing.assert_close(dm, dm.T, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["cosine", "euclidean", "manhattan"])
def test_self_distance_is_zero(name):
    dist = make(name)
    x, _ = data(9, n=6)
    torch.testing.assert_close(dist.distance(x, x.clone()), torch.zeros(6, dtype=x.dtype), rtol=0, atol=1e-7)
    torch.testing.assert_close(dist.distance_matrix(x).diagonal(), torch.zeros(6, dtype=x.dtype), rtol=0, atol=1e-7)


# --------------------------------------------------------------------------- cosine range
def test_cosine_distance_range_is_0_to_2_in_both_forms():
    cos = make("cosine")
    g = torch.Generator().manual_seed(11)
    x = torch.randn(64, 3, generator=g)
    # include exact opposites and exact duplicates: the extremes of the range
    y = torch.cat([-x[:16], x[16:32] * 3.0, torch.randn(32, 3, generator=g)])
    tol = 1e-6  # float32 rounding only
    for d in (cos.distance(x, y), cos.distance_matrix(x, y), cos.distance_matrix(x)):
        assert float(d.min()) >= -tol
        assert float(d.max()) <= 2.0 + tol
    # the extremes are actually reached (a 0..1 scale would give 1.0 for opposites)
    torch.testing.assert_close(cos.distance(x[:16], -x[:16]), torch.full((16,), 2.0), rtol=0, atol=1e-5)
    torch.testing.assert_close(cos.distance_matrix(x[:16], -x[:16]).diagonal(), torch.full((16,), 2.0), rtol=0, atol=1e-5)
    torch.testing.assert_close(cos.distance(x[16:32], 3.0 * x[16:32]), torch.zeros(16), rtol=0, atol=1e-5)
    torch.testing.assert_close(cos.distance_matrix(x[16:32], 3.0 * x[16:32]).diagonal(), torch.zeros(16), rtol=0, atol=1e-5)
    # orthogonal vectors sit in the middle of the range
    e = torch.eye(3)
    torch.testing.assert_close(cos.distance(e, e.roll(1, 0)), torch.ones(3))
    torch.testing.assert_close(cos.distance_matrix(e, e.roll(1, 0)).diagonal(), torch.ones(3))
    # similarity stays within [-1, 1]
    s = cos.similarity_matrix(x, y)
    assert float(s.min()) >= -1.0 - tol and float(s.max()) <= 1.0 + tol


def test_cosine_is_scale_invariant():
    cos = make("cosine")
    x, y = data(12, n=5)
    torch.testing.assert_close(cos.distance_matrix(x, y), cos.distance_matrix(2.5 * x, 0.1 * y))
    torch.testing.assert_close(cos.distance(x, y), cos.distance(2.5 * x, 0.1 * y))


# --------------------------------------------------------------------------- euclidean at zero
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_euclidean_gradients_finite_at_zero_distance(dtype):
    euc = make("euclidean")
    g = torch.Generator().manual_seed(13)
    base = torch.randn(5, 4, generator=g, dtype=dtype)
    x = torch.cat([base, base[:2]]).requires_grad_(True)  # rows 5, 6 duplicate rows 0, 1

    (gm,) = torch.autograd.grad(euc.distance_matrix(x).sum(), x)
    assert torch.isfinite(gm).all()
    (gm2,) = torch.autograd.grad(euc.distance_matrix(x, x).sum(), x)
    assert torch.isfinite(gm2).all()
    (gr,) = torch.autograd.grad(euc.distance(x, x).sum(), x)  # all rows at zero distance
    assert torch.isfinite(gr).all()
    # d(x_i, x_i) is constant 0, its gradient must be 0 (not NaN, not huge)
    torch.testing.assert_close(gr, torch.zeros_like(gr))
    (gs,) = torch.autograd.grad(euc.similarity_matrix(x).sum(), x)
    assert torch.isfinite(gs).all()

    # a single zero-distance entry: the L2 distance is 1-Lipschitz in each argument, so the
    # gradient of one entry w.r.t. any row has norm <= 1
    (g_one,) = torch.autograd.grad(euc.distance_matrix(x)[0, 5], x)
    assert torch.isfinite(g_one).all()
    assert float(g_one.norm(dim=1).max()) <= 1.0 + 1e-6
    y = base[:2].clone().requires_grad_(True)
    (g_row,) = torch.autograd.grad(euc.distance(y, base[:2].clone()).sum(), y)
    assert torch.isfinite(g_row).all()


def test_euclidean_matrix_at_zero_distance_float32():
    """Duplicate embeddings (very common: the same text twice) are at distance 0, and the
    matrix form must agree with the row form there too (core/distance.py contract)."""
    euc = make("euclidean")
    worst = 0.0
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        base = torch.randn(4, 16, generator=g) * 3.0
        x = torch.cat([base, base[:2]])  # rows 4, 5 duplicate rows 0, 1
        dm = euc.distance_matrix(x)
        rows = euc.distance(x[[0, 1, 4, 5]], x[[4, 5, 0, 1]])
        assert float(rows.abs().max()) == 0.0
        worst = max(worst, float(dm[0, 4]), float(dm[1, 5]), float(dm[4, 0]), float(dm.diagonal().abs().max()))
    assert worst <= 1e-4, f"distance_matrix gives {worst} for identical float32 rows (row form gives 0)"


def test_euclidean_matrix_near_zero_distance_float32():
    """Close but distinct points: matrix form within 1e-4 of the exact distance."""
    euc = make("euclidean")
    g = torch.Generator().manual_seed(21)
    x = torch.randn(8, 16, generator=g) * 3.0
    y = x + 1e-3 * torch.randn(8, 16, generator=g)
    exact = ref_rows(ref_distance, "euclidean", x, y).float()
    torch.testing.assert_close(euc.distance(x, y), exact, rtol=0, atol=1e-4)
    torch.testing.assert_close(euc.distance_matrix(x, y).diagonal(), exact, rtol=0, atol=1e-4)
