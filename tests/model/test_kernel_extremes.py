"""Gaussian kernels at the extremes (issue 15): w = 0, |w| → ∞, coincident and antipodal particles, ReLU with a bias.

Every value is checked against an independent computation: 1-D ``scipy.integrate.quad`` of
Stein's identities at ``w = 0``, adaptive 1-D quadrature of the plane integral elsewhere,
the erf closed form in 60-digit ``mpmath``, central finite differences and a sampled backend.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate, special

from landscape import load_problem
from landscape.cli import main
from landscape.model.activations import get_activation
from landscape.model.kernels import HermiteQuadrature, erf_kernel, gaussian_kernel

SIGMOID = get_activation("sigmoid")
RELU = get_activation("relu")
RULE = HermiteQuadrature()


def _sig(z, n: int = 0):
    """The n-th derivative (n ≤ 2) of the logistic sigmoid, in numpy."""
    s = special.expit(z)
    return (s, s * (1 - s), s * (1 - s) * (1 - 2 * s))[n]


def _gauss_mean(f) -> float:
    """``E[f(g)]``, ``g ~ N(0, 1)``, by adaptive quadrature."""
    return integrate.quad(lambda g: f(g) * math.exp(-0.5 * g * g) / math.sqrt(2 * math.pi), -40, 40, limit=400, epsabs=1e-15)[0]


def _plane_reference(sigma, u: np.ndarray, v: np.ndarray, bu: float, bv: float, inner) -> float:
    """``E[σ(u·x + bu) σ(v·x + bv)]`` as a 1-D quadrature over ``g = û·x`` of ``σ(|u|g + bu) · inner(m, t)``.

    ``inner(m, t) = E[σ(m + t g')]`` is the integral over the component of ``v`` orthogonal to ``u``.
    """
    top = np.abs(u).max()
    ru = top * np.linalg.norm(u / top)  # no underflow at |u| = 1e-300
    v1 = float(v @ (u / top)) / (ru / top)
    t = math.sqrt(max(float(v @ v) - v1 * v1, 0.0))
    kink = [-bu / ru] if sigma is RELU else None
    f = lambda g: (max(ru * g + bu, 0.0) if sigma is RELU else _sig(ru * g + bu)) * inner(v1 * g + bv, t)  # noqa: E731
    dens = lambda g: f(g) * math.exp(-0.5 * g * g) / math.sqrt(2 * math.pi)  # noqa: E731
    return integrate.quad(dens, -40, 40, points=kink, limit=400, epsabs=1e-15, epsrel=1e-13)[0]


def _relu_inner(m: float, t: float) -> float:
    return max(m, 0.0) if t == 0 else m * special.ndtr(m / t) + t * math.exp(-0.5 * (m / t) ** 2) / math.sqrt(2 * math.pi)


def _sigmoid_inner(m: float, t: float) -> float:
    return _gauss_mean(lambda g: _sig(m + t * g))


def _kernel(u, bu, v, bv, act=SIGMOID):
    as_t = lambda b: None if b is None else torch.tensor(b, dtype=torch.float64)  # noqa: E731
    return gaussian_kernel(act, u, as_t(bu), act, v, as_t(bv), RULE)


# --- w = 0 and small radii (the Mehler series' Taylor form) ------------------------------------------


@pytest.mark.parametrize("bias", [None, 0.7])
def test_series_at_zero_weight_value_gradient_and_hessian_against_stein(bias):
    """At u = 0: κ = σ(b)E[σ(v·x+b')], ∇κ = σ'(b) v E[σ'], ∇²κ = σ''(b)(I E[σ] + v vᵀ E[σ'']) (Stein)."""
    v = np.array([0.8, -0.5, 0.3])
    bv = -0.4
    b = 0.0 if bias is None else bias
    rv = np.linalg.norm(v)
    mean = [_gauss_mean(lambda g, n=n: _sig(rv * g + bv, n)) for n in range(3)]
    ref_value = _sig(b) * mean[0]
    ref_grad = _sig(b, 1) * v * mean[1]
    ref_hess = _sig(b, 2) * (np.eye(3) * mean[0] + np.outer(v, v) * mean[2])

    vt = torch.tensor(v)[None]
    bu = None if bias is None else [bias]

    def kappa(u):
        return _kernel(u[None], bu, vt, [bv])[0, 0]

    zero = torch.zeros(3, dtype=torch.float64)
    assert float(kappa(zero)) == pytest.approx(ref_value, abs=1e-14)
    np.testing.assert_allclose(torch.func.grad(kappa)(zero).numpy(), ref_grad, atol=1e-13)
    np.testing.assert_allclose(torch.func.hessian(kappa)(zero).numpy(), ref_hess, atol=1e-11)
    # forward-over-reverse (the JVPs of the velocity in rosenbrock23) agrees with the Hessian
    tangent = torch.tensor([0.3, -1.0, 0.5])
    _, jvp = torch.func.jvp(torch.func.grad(kappa), (zero,), (tangent,))
    np.testing.assert_allclose(jvp.numpy(), ref_hess @ tangent.numpy(), atol=1e-11)


@pytest.mark.parametrize("radius", [1e-300, 1e-154, 1e-8, 1e-3, 0.0105, 0.0115, 0.05])
def test_series_at_small_radii_value_and_gradient(radius):
    """Across the Taylor threshold r₀ = ε^{1/8} ≈ 0.011: values against quadrature, gradients against finite differences."""
    direction = np.array([0.6, 0.0, -0.8])
    v = np.array([0.8, -0.5, 0.3])
    u = radius * direction
    ref = _plane_reference(SIGMOID, u, v, 0.2, -0.4, _sigmoid_inner)
    k = _kernel(torch.tensor(u)[None], [0.2], torch.tensor(v)[None], [-0.4])
    assert float(k) == pytest.approx(ref, abs=1e-13)

    def kappa(x):
        return _kernel(x[None], [0.2], torch.tensor(v)[None], [-0.4])[0, 0]

    ut = torch.tensor(u)
    grad = torch.func.grad(kappa)(ut).numpy()
    h = 1e-4
    fd = np.array([(float(kappa(ut + h * e)) - float(kappa(ut - h * e))) / (2 * h) for e in torch.eye(3, dtype=torch.float64)])
    np.testing.assert_allclose(grad, fd, atol=1e-9)
    assert np.all(np.isfinite(torch.func.hessian(kappa)(ut).numpy()))


# --- erf at large |w| ---------------------------------------------------------------------------------


def _erf_reference(u: np.ndarray, v: np.ndarray) -> float:
    """The erf closed form in 60-digit arithmetic (no overflow, no cancellation)."""
    with mpmath.workdps(60):
        uu = [mpmath.mpf(float(x)) for x in u]
        vv = [mpmath.mpf(float(x)) for x in v]
        dot = mpmath.fsum(a * b for a, b in zip(uu, vv))
        nu = 1 + 2 * mpmath.fsum(a * a for a in uu)
        nv = 1 + 2 * mpmath.fsum(b * b for b in vv)
        return float(2 / mpmath.pi * mpmath.asin(2 * dot / mpmath.sqrt(nu * nv)))


@pytest.mark.parametrize("scale", [1e3, 1e10, 1e100, 1e150, 1e200, 1e300])
def test_erf_kernel_at_huge_weights_matches_closed_form_and_sign_kernel(scale, rng):
    """Values against 60-digit arithmetic (and the sign-kernel limit); gradients and Hessians finite."""
    dirs = rng.standard_normal((3, 4))
    u = scale * dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    # coincident, antipodal, another direction at the same scale, a moderate weight
    v = np.vstack([u[0], -u[0], u[1], dirs[2]])
    k = erf_kernel(torch.tensor(u), torch.tensor(v)).numpy()
    ref = np.array([[_erf_reference(a, b) for b in v] for a in u])
    # pairs away from x = ±1 are right to rounding; at coincidence G = |s_u|²|s_v|² − x² is
    # a difference of O(1) terms, so 1 − x² carries an absolute rounding error of a few ε:
    # the value error is ≤ (2/π)√(4ε) ≈ 2e-8 where 1/(2|w|²) < ε (documented in erf_kernel)
    aligned = np.abs(np.abs(ref) - 1.0) < 1e-6
    np.testing.assert_allclose(k[~aligned], ref[~aligned], rtol=0, atol=1e-13)
    np.testing.assert_allclose(k[aligned], ref[aligned], rtol=0, atol=3e-8)
    unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    sign_kernel = (2 / np.pi) * np.arcsin(np.clip(unit @ unit[[0, 1]].T, -1, 1))
    np.testing.assert_allclose(k[:, [0, 2]], sign_kernel, atol=3e-8 + 2.0 / scale)

    def loss(x):
        return (erf_kernel(x, x) ** 2).sum() - 2 * erf_kernel(x, torch.tensor(v)).sum()

    ut = torch.tensor(u)
    grad = torch.func.grad(loss)(ut)
    hvp = torch.func.jvp(torch.func.grad(loss), (ut,), (ut / scale,))[1]
    assert torch.isfinite(grad).all() and torch.isfinite(hvp).all()


def _erf_reference_gradient(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``∇_u`` of the erf closed form, by 60-digit numerical differentiation."""
    with mpmath.workdps(60):
        basis = np.eye(u.size)
        return np.array([float(mpmath.diff(lambda t, e=e: _erf_reference_mp(u, v, e, t), 0)) for e in basis])


def _erf_reference_mp(u: np.ndarray, v: np.ndarray, e: np.ndarray, t) -> mpmath.mpf:
    uu = [mpmath.mpf(float(x)) + t * float(ei) for x, ei in zip(u, e)]
    vv = [mpmath.mpf(float(x)) for x in v]
    dot = mpmath.fsum(a * b for a, b in zip(uu, vv))
    nu = 1 + 2 * mpmath.fsum(a * a for a in uu)
    nv = 1 + 2 * mpmath.fsum(b * b for b in vv)
    return 2 / mpmath.pi * mpmath.asin(2 * dot / mpmath.sqrt(nu * nv))


@pytest.mark.parametrize("scale", [30.0, 1e3, 1e5])
def test_erf_kernel_gradient_at_large_weights_matches_high_precision(scale, rng):
    """The gradient (of size 1/|w|² at coincident and antipodal partners) against 60-digit differentiation.

    Central differences in float64 cannot check it: near x = ±1 the kernel varies on the
    scale 1/|w| in angle, and its rounding (ε|w|) swamps a difference quotient at |w| ≳ 1e4.
    """
    dirs = rng.standard_normal((3, 3))
    u = scale * dirs[:2] / np.linalg.norm(dirs[:2], axis=1, keepdims=True)
    partners = [u[0], -u[0], u[1], dirs[2]]
    ut = torch.tensor(u[0])
    for v in partners:
        grad = torch.func.grad(lambda x, v=v: erf_kernel(x[None], torch.tensor(v)[None])[0, 0])(ut).numpy()
        np.testing.assert_allclose(grad, _erf_reference_gradient(u[0], v), rtol=1e-9, atol=1e-15)


# --- coincident and antipodal particles: series and closed forms; ReLU with a bias --------------------


@pytest.mark.parametrize("partner", [1.0, -1.0, 0.0])
def test_series_with_bias_at_coincident_and_antipodal_particles(partner):
    """Sigmoid with biases, v = ±u (and v ⊥ u): the Mehler series against the plane quadrature."""
    u = np.array([0.9, -0.4, 0.2])
    v = partner * u if partner else np.array([0.4, 0.9, 0.0])
    ref = _plane_reference(SIGMOID, u, v, 0.3, -0.6, _sigmoid_inner)
    assert float(_kernel(torch.tensor(u)[None], [0.3], torch.tensor(v)[None], [-0.6])) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("partner", [1.0, -1.0, 0.5])
def test_relu_with_bias_at_coincident_antipodal_and_generic_pairs(partner):
    """ReLU with biases (the Mehler series, no closed form) against the exact inner integral and quad over the kink."""
    u = np.array([0.7, 0.5, -0.3])
    v = partner * u if partner != 0.5 else np.array([0.2, -0.6, 0.5])
    ref = _plane_reference(RELU, u, v, 0.25, -0.1, _relu_inner)
    k = float(_kernel(torch.tensor(u)[None], [0.25], torch.tensor(v)[None], [-0.1], act=RELU))
    # the kink limits the trapezoid rule in the coefficients to O(step²) (issue 15, item 3)
    assert k == pytest.approx(ref, abs=2e-4)


def test_relu_closed_form_at_coincident_and_antipodal_particles():
    u = np.array([0.7, 0.5, -0.3])
    for v in (u, -u, 2.5 * u):
        ref = _plane_reference(RELU, u, v, 0.0, 0.0, _relu_inner)
        assert float(_kernel(torch.tensor(u)[None], None, torch.tensor(v)[None], None, act=RELU)) == pytest.approx(ref, abs=1e-13)


# --- the issue's example, end to end -------------------------------------------------------------------

ISSUE_PROBLEM = """
[input]
law = "gaussian"
dim = 3

[teacher]
activation = "sigmoid"
c = [[1.0, 0.0], [0.0, 1.0]]
u = [[0.5, -0.3, 0.2], [0.1, 0.4, -0.6]]

[model]
activation = "sigmoid"
features = 2

[task]
noise = 0.0
prompt_length = "inf"

[expectation]
"""
ISSUE_A = np.array([[1.0, 0.2], [-0.3, 0.8], [0.5, 0.5]])
ISSUE_W = np.array([[0.6, 0.1, -0.2], [-0.1, 0.5, 0.3], [0.0, 0.0, 0.0]])


def _problem(tmp_path: Path, expectation: str) -> Path:
    problem = tmp_path / f"p{abs(hash(expectation))}.toml"
    problem.write_text(ISSUE_PROBLEM + expectation)
    return problem


def test_issue_example_zero_weight_sigmoid_gradient_matches_sampled_backend_and_finite_differences(capsys, tmp_path):
    """Sigmoid particle at w = 0: `landscape evaluate --json` gave grad_norm 6.6e134 (sampled: 0.0151)."""
    problem = _problem(tmp_path, 'method = "exact"\n')
    measure = tmp_path / "m.npz"
    np.savez(measure, a=ISSUE_A, w=ISSUE_W)
    assert main(["evaluate", "--problem", str(problem), "--measure", str(measure), "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)["grad_norm"]

    a, w = torch.tensor(ISSUE_A), torch.tensor(ISSUE_W)
    p = torch.full((3,), 1.0 / 3.0, dtype=torch.float64)
    sampled = [
        float(load_problem(_problem(tmp_path, f'method = "monte_carlo"\nsamples = 400000\nseed = {s}\n')).landscape().stationarity(a, w, p)) for s in range(4)
    ]
    mean, stderr = float(np.mean(sampled)), float(np.std(sampled, ddof=1)) / 2.0
    assert abs(exact - mean) < 5 * stderr

    # the exact backend's gradient itself, against central differences of its loss
    landscape = load_problem(problem).landscape()
    w_req = w.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(landscape.loss(a, w_req, p), w_req)
    h = 1e-5
    fd = torch.zeros_like(w)
    for idx in np.ndindex(*w.shape):
        e = torch.zeros_like(w)
        e[idx] = h
        fd[idx] = (landscape.loss(a, w + e, p) - landscape.loss(a, w - e, p)) / (2 * h)
    torch.testing.assert_close(grad, fd, atol=1e-9, rtol=1e-6)
