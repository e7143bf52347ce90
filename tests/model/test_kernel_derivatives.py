"""The fused closed-form kernels and derivatives of :mod:`landscape.model.kernel_derivatives`
against torch autograd of :func:`erf_kernel` / :func:`relu_kernel` (docs/theory.md §3), at
random and extreme weights (coincident, antipodal, large |w|, w = 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.model.kernel_derivatives import (
    KERNEL_IDS,
    kernel_directional,
    kernel_gradient,
    kernel_hessian_product,
    kernel_matrix,
)
from landscape.model.kernels import erf_kernel, relu_kernel

REFERENCE = {"erf": erf_kernel, "relu": relu_kernel}


def _weights(case: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``u`` (5, 3) and ``v`` (4, 3) for a named case; the extreme ones share rows or directions."""
    u = rng.standard_normal((5, 3))
    v = rng.standard_normal((4, 3))
    if case == "coincident":
        v[:3] = u[:3]
    elif case == "antipodal":
        v[:3] = -u[:3]
    elif case == "parallel":
        v[:3] = 2.5 * u[:3]
    elif case == "large":
        u, v = 1e3 * u, 1e3 * v
        v[0] = u[0]
    elif case == "zero":
        u[0] = 0.0
        v[1] = 0.0
    return u, v


def _reference(name, u, v, weights, du, dv):
    """``(κ, Σ_j W_ij ∇_u κ, ∇_u κ·du, its derivative along (du, dv))`` by torch autograd."""
    fn = REFERENCE[name]
    ut, vt, wt = torch.tensor(u), torch.tensor(v), torch.tensor(weights)

    def contracted_gradient(x, y):
        return torch.func.grad(lambda x_: (fn(x_, y) * wt).sum())(x)

    value = fn(ut, vt)
    grad = contracted_gradient(ut, vt)
    directional = torch.func.jvp(lambda x: fn(x, vt), (ut,), (torch.tensor(du),))[1]
    hessian = torch.func.jvp(contracted_gradient, (ut, vt), (torch.tensor(du), torch.tensor(dv)))[1]
    return [t.numpy() for t in (value, grad, directional, hessian)]


def _close(fast: np.ndarray, reference: np.ndarray, rtol: float, what: str) -> None:
    scale = max(float(np.abs(reference).max()), 1e-300)
    err = float(np.abs(fast - reference).max())
    assert err <= rtol * scale, f"{what}: error {err:.3e} vs scale {scale:.3e}"


@pytest.mark.parametrize("name", ["erf", "relu"])
@pytest.mark.parametrize("case", ["random", "coincident", "antipodal", "parallel", "large", "zero"])
def test_closed_forms_equal_autograd_of_the_kernels(name, case):
    rng = np.random.default_rng(7)
    u, v = _weights(case, rng)
    weights = rng.standard_normal((5, 4))
    du, dv = rng.standard_normal(u.shape), rng.standard_normal(v.shape)
    kind = KERNEL_IDS[name]
    fast = (
        kernel_matrix(kind, u, v),
        kernel_gradient(kind, u, v, weights),
        kernel_directional(kind, u, v, du),
        kernel_hessian_product(kind, u, v, weights, du, dv),
    )
    reference = _reference(name, u, v, weights, du, dv)
    # relu_kernel takes the Gram determinant |u|²|v|² − (u·v)², whose rounding (ε|u|²|v|²) is the
    # whole determinant at u ∥ v (v = 2.5u): its autograd Hessian there is off by √ε (1.5e-8 here);
    # the fused form is exact (test_relu_limits_at_parallel_weights), value and gradient agree to 1e-12.
    hessian_rtol = 1e-7 if name == "relu" and case == "parallel" else 1e-12
    for what, f, r, rtol in zip(("value", "gradient", "directional", "hessian"), fast, reference, (1e-12,) * 3 + (hessian_rtol,)):
        _close(f, r, rtol, f"{name} {case} {what}")


def test_relu_limits_at_parallel_weights():
    """``u ∥ v``: ``∇_u κ = v/2`` (same direction) or 0 (opposite), ``∇_uu κ = 0``, ``∇_vu κ = ½ I`` or 0;
    ``u = 0``: κ = 0 with zero derivatives (relu_kernel's autograd limit)."""
    kind = KERNEL_IDS["relu"]
    u = np.array([[1.0, -2.0, 0.5]])
    du, dv = np.array([[0.3, 0.1, -0.7]]), np.array([[-0.2, 0.9, 0.4]])
    one = np.ones((1, 1))
    for v, half in ((3.0 * u, 0.5), (-3.0 * u, 0.0)):
        np.testing.assert_allclose(kernel_gradient(kind, u, v, one), half * v, rtol=1e-15)
        np.testing.assert_allclose(kernel_hessian_product(kind, u, v, one, du, 0 * dv), 0 * du, atol=0)
        np.testing.assert_allclose(kernel_hessian_product(kind, u, v, one, 0 * du, dv), half * dv, rtol=1e-15)
    zero = np.zeros((1, 3))
    assert kernel_matrix(kind, zero, u)[0, 0] == 0.0
    assert not kernel_gradient(kind, zero, u, one).any()
    assert not kernel_hessian_product(kind, zero, u, one, du, dv).any()


def test_erf_stays_finite_at_huge_weights():
    """|w| up to 1e300: no overflow; the value tends to the sign kernel (2/π) arcsin(û·v̂)."""
    kind = KERNEL_IDS["erf"]
    rng = np.random.default_rng(3)
    u, v = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    uh, vh = u / np.linalg.norm(u, axis=1, keepdims=True), v / np.linalg.norm(v, axis=1, keepdims=True)
    big_u, big_v = 1e300 * u, 1e300 * v
    np.testing.assert_allclose(kernel_matrix(kind, big_u, big_v), 2 / np.pi * np.arcsin(uh @ vh.T), rtol=1e-12)
    outputs = (
        kernel_gradient(kind, big_u, big_v, np.ones((3, 2))),
        kernel_hessian_product(kind, big_u, big_v, np.ones((3, 2)), u, v),
    )
    assert all(np.all(np.isfinite(out)) for out in outputs)
