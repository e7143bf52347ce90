"""The Mehler-series pair tables (:mod:`landscape.model.series_derivatives`) against torch autograd
of ``HermiteQuadrature.kernel`` on the reference path (torch.func, autograd through σ on the grid):
kernel, gradient contraction, directional derivative and Hessian product to rounding, on rows at
every radius regime (zero, below and at the Taylor radius r₀, coincident, antipodal, large)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape import get_activation
from landscape.model.fused_series import reference_kernels
from landscape.model.kernels import HermiteQuadrature
from landscape.model.series_derivatives import (
    FIELD,
    JVP,
    MEHLER,
    VALUES,
    pair_directional,
    pair_gradient,
    pair_hessian_prepare,
    pair_hessian_product,
    pair_matrix,
    pair_tables,
    radial_jet,
)

RTOL = 1e-12
QUAD = HermiteQuadrature(order=40)
R0 = float(np.finfo(np.float64).eps) ** 0.125


def _rows(d: int = 3) -> np.ndarray:
    """Student rows: random, zero, below r₀, just above r₀, a coincident and an antipodal pair, a large one."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((8, d)) * 0.8
    w[1] = 0.0
    w[2] *= 0.3 * R0 / np.linalg.norm(w[2])
    w[3] *= 1.5 * R0 / np.linalg.norm(w[3])
    w[4] = w[0]
    w[5] = -w[0]
    w[6] *= 2.5 / np.linalg.norm(w[6])
    return w


def _close(fast: np.ndarray, ref: torch.Tensor, what: str) -> None:
    ref = ref.detach().numpy()
    err, scale = float(np.abs(fast - ref).max()), float(np.abs(ref).max())
    assert err <= RTOL * scale, f"{what}: error {err:.3e}, scale {scale:.3e}"


def _reference(act_u, act_v, u, v, weights, du, dv):
    """κ, Σ_j W ∇_u κ, ∇_u κ·du and the Hessian product by torch.func on the reference path."""
    u, v, weights, du, dv = (torch.from_numpy(x) for x in (u, v, weights, du, dv))

    def kernel(u_, v_):
        return QUAD.kernel(act_u, u_, None, act_v, v_, None)

    def gradient(u_, v_):
        return torch.func.grad(lambda x: (weights * kernel(x, v_)).sum())(u_)

    with reference_kernels():
        kappa = kernel(u, v)
        directional = torch.func.jvp(lambda x: kernel(x, v), (u,), (du,))[1]
        grad = gradient(u, v)
        hess = torch.func.jvp(gradient, (u, v), (du, dv))[1]
    return kappa, grad, directional, hess


PAIRS = [("sigmoid", "sigmoid", True), ("tanh", "tanh", True), ("gelu", "sigmoid", False), ("sigmoid", "erf", False)]


@pytest.mark.parametrize("student, other, symmetric", PAIRS)
def test_pair_tables_equal_autograd_of_the_series(student, other, symmetric):
    act_u, act_v = get_activation(student), get_activation(other)
    u = _rows()
    rng = np.random.default_rng(3)
    v = u if symmetric else np.concatenate([rng.standard_normal((4, 3)), u[:1], np.zeros((1, 3))])
    weights = rng.standard_normal((u.shape[0], v.shape[0]))
    du = rng.standard_normal(u.shape)
    dv = du if symmetric else np.zeros_like(v)
    rows_u, coef_u = radial_jet(QUAD, act_u, u, 2)
    rows_v, coef_v = radial_jet(QUAD, act_v, v, 1)
    if not symmetric:
        coef_v[1] = 0.0  # a fixed v side (the teacher) carries no derivative
    coef_vt = np.ascontiguousarray(coef_v.transpose(0, 2, 1))
    kappa, grad, directional, hess = _reference(act_u, act_v, u, v, weights, du, dv)
    for level in (VALUES, FIELD, JVP):
        tab = pair_tables(MEHLER, u, rows_u, coef_u[: level + 1], v, rows_v, coef_vt, level, symmetric)
        _close(pair_matrix(MEHLER, u, v, tab), kappa, f"kernel at level {level}")
    _close(pair_gradient(MEHLER, u, v, tab, weights), grad, "gradient")
    _close(pair_directional(MEHLER, u, v, tab, du), directional, "directional")
    prepared = pair_hessian_prepare(MEHLER, u, v, tab, rows_u, rows_v, weights)
    _close(pair_hessian_product(MEHLER, u, v, prepared, weights, du, dv), hess, "hessian product")


def test_the_radial_jet_equals_autograd_of_the_scaled_coefficients():
    """``∂_q^p a_n(q)`` (p ≤ 2) at every radius regime against double autograd of ``_scaled_coefficients``."""
    act = get_activation("sigmoid")
    w = np.delete(_rows(), 1, axis=0)  # q = 0 has no square root to differentiate through (the pair tables cover w = 0)
    rows, coef = radial_jet(QUAD, act, w, 2)
    with reference_kernels():
        q = torch.from_numpy(np.einsum("ij,ij->i", w, w)).requires_grad_(True)
        # any w with |w|² = q: the coefficients depend on q only
        direction = torch.zeros(w.shape[0], w.shape[1], dtype=torch.float64)
        direction[:, 0] = 1.0
        rbar, alpha = QUAD._scaled_coefficients(act, direction * torch.sqrt(q)[:, None], None)
        first = torch.autograd.grad(alpha.sum(0), q, torch.eye(alpha.shape[1], dtype=torch.float64), is_grads_batched=True, create_graph=True)[0]
        second = torch.stack([torch.autograd.grad(first[n].sum(), q, retain_graph=True)[0] for n in range(alpha.shape[1])])
    _close(coef[0], alpha, "a")
    _close(coef[1], first.T, "a'")
    _close(coef[2], second.T, "a''")
    _close(rows[0], 1.0 / rbar, "ν")
