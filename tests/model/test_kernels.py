"""Gaussian kernels: closed forms against the Mehler series, adaptive 2-D quadrature and sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special

from landscape.model.activations import get_activation
from landscape.model.kernels import HermiteQuadrature, erf_kernel, gaussian_kernel, relu_kernel
from verification.claims.expressivity import NUMPY_ACTIVATIONS as NUMPY_SIGMA  # σ in NumPy/SciPy, independent of torch


def reference_kernel(name: str, u: np.ndarray, v: np.ndarray, bu: float = 0.0, bv: float = 0.0) -> float:
    """E[σ(u·x + bu) σ(v·x + bv)] by quadrature in the plane of u and v, independent of the toolkit.

    Smooth σ: tensor Gauss–Legendre (400² nodes on [−14, 14]²). ReLU without bias: the inner
    Gaussian integral in closed form, ``E[relu(m + t g)] = m Φ(m/t) + t φ(m/t)``, and the outer
    one (over the half-line where the first factor is nonzero) by Gauss–Legendre.
    """
    ru = np.linalg.norm(u)
    e1 = u / ru
    v1 = v @ e1
    v2 = np.linalg.norm(v - v1 * e1)
    nodes, weights = np.polynomial.legendre.leggauss(400)
    if name == "relu" and bu == 0.0 and bv == 0.0:
        g1, wts = 7.0 * (nodes + 1.0), 7.0 * weights
        m = v1 * g1
        inner = m * special.ndtr(m / v2) + v2 * np.exp(-0.5 * (m / v2) ** 2) / math.sqrt(2 * math.pi)
        return float(np.sum(wts * ru * g1 * inner * np.exp(-0.5 * g1**2)) / math.sqrt(2 * math.pi))
    sigma = NUMPY_SIGMA[name]
    g, wts = 14.0 * nodes, 14.0 * weights
    g1, g2 = g[:, None], g[None, :]
    values = sigma(ru * g1 + bu) * sigma(v1 * g1 + v2 * g2 + bv) * np.exp(-0.5 * (g1**2 + g2**2)) / (2 * math.pi)
    return float(wts @ values @ wts)


def test_erf_closed_form_matches_quadrature_reference(rng):
    u, v = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    k = erf_kernel(torch.tensor(u), torch.tensor(v)).numpy()
    ref = np.array([[reference_kernel("erf", a, b) for b in v] for a in u])
    np.testing.assert_allclose(k, ref, atol=1e-11)


def test_relu_closed_form_matches_quadrature_reference(rng):
    u, v = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    k = relu_kernel(torch.tensor(u), torch.tensor(v)).numpy()
    ref = np.array([[reference_kernel("relu", a, b) for b in v] for a in u])
    np.testing.assert_allclose(k, ref, atol=1e-12)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu", "erf"])
def test_mehler_series_accurate_to_1e12_at_moderate_weights(name, rng):
    """Measured accuracy of the default rule (order 128) for |w| ≲ 1.2, including u = v."""
    u = rng.standard_normal((2, 3))
    u = 1.1 * u / np.linalg.norm(u, axis=1, keepdims=True)
    v = np.vstack([u[0], 0.8 * rng.standard_normal(3)])
    act = get_activation(name)
    k = HermiteQuadrature().kernel(act, torch.tensor(u), None, act, torch.tensor(v), None).numpy()
    ref = np.array([[reference_kernel(name, a, b) for b in v] for a in u])
    np.testing.assert_allclose(k, ref, atol=1e-12)


def test_mehler_series_with_bias_matches_reference(rng):
    u, v = 0.9 * rng.standard_normal((2, 3)), 0.9 * rng.standard_normal((2, 3))
    bu, bv = rng.standard_normal(2), rng.standard_normal(2)
    act = get_activation("sigmoid")
    k = HermiteQuadrature().kernel(act, torch.tensor(u), torch.tensor(bu), act, torch.tensor(v), torch.tensor(bv))
    ref = np.array([[reference_kernel("sigmoid", u[i], v[j], bu[i], bv[j]) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(k.numpy(), ref, atol=1e-12)


def test_mehler_error_shrinks_with_order_for_large_weights():
    """tanh at |w| = 2: the truncation error falls as the order grows, and the tail tracks it."""
    u = np.array([[2.0, 0.0]])
    ref = reference_kernel("tanh", u[0], u[0])
    act = get_activation("tanh")
    errors, tails = [], []
    for order in (32, 128, 512):
        rule = HermiteQuadrature(order=order)
        k = rule.kernel(act, torch.tensor(u), None, act, torch.tensor(u), None)
        errors.append(abs(float(k) - ref))
        tails.append(float(rule.tail(act, torch.tensor([2.0]), None)))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-10
    assert tails[0] > tails[1] > tails[2]


@pytest.mark.parametrize("name", ["erf", "relu", "tanh"])
def test_kernels_agree_with_sampling(name, rng):
    u, v = rng.standard_normal((2, 3)), rng.standard_normal((3, 3))
    act = get_activation(name)
    k = gaussian_kernel(act, torch.tensor(u), None, act, torch.tensor(v), None, HermiteQuadrature()).numpy()
    x = rng.standard_normal((400_000, 3))
    phi_u, phi_v = NUMPY_SIGMA[name](x @ u.T), NUMPY_SIGMA[name](x @ v.T)
    terms = phi_u[:, :, None] * phi_v[:, None, :]
    stderr = terms.std(0) / math.sqrt(x.shape[0])
    assert np.all(np.abs(terms.mean(0) - k) < 5 * stderr + 1e-12)


@pytest.mark.parametrize("name", ["erf", "relu", "tanh"])
def test_derivatives_finite_and_correct_at_coincident_and_parallel_particles(name, rng):
    """Gradients and Hessians through κ(u, v) at u = v and u ∥ v agree with finite differences."""
    act = get_activation(name)
    rule = HermiteQuadrature()
    base = torch.tensor(rng.standard_normal(3)) * 0.6
    target = base.clone()

    for partner in (target, 1.7 * target, -0.8 * target):
        def kappa(x, partner=partner):
            return gaussian_kernel(act, x[None], None, act, partner[None], None, rule)[0, 0]

        grad = torch.func.grad(kappa)(base)
        hess = torch.func.hessian(kappa)(base)
        assert torch.isfinite(grad).all() and torch.isfinite(hess).all()
        h = 1e-5
        fd = torch.stack([(torch.func.grad(kappa)(base + h * e) - torch.func.grad(kappa)(base - h * e)) / (2 * h) for e in torch.eye(3)])
        torch.testing.assert_close(hess, fd, atol=2e-6, rtol=1e-6)


def test_relu_kernel_is_zero_for_antiparallel_and_half_dot_for_parallel():
    u = torch.tensor([[1.0, 2.0, -0.5]])
    assert float(relu_kernel(u, -2.0 * u)) == pytest.approx(0.0, abs=1e-15)
    assert float(relu_kernel(u, 3.0 * u)) == pytest.approx(0.5 * 3.0 * float((u * u).sum()), rel=1e-14)


def test_hermite_quadrature_rejects_bad_parameters():
    with pytest.raises(ValueError, match="order"):
        HermiteQuadrature(order=0)
