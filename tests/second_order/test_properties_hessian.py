"""Property-based tests of the Wasserstein Hessian and its eigensolvers, and exact = sampled (issue 8).

Over the random problems, measures and activations of :mod:`test_properties` (its
``cases`` strategy is reused):

* the Wasserstein Hessian ``H = P^{-1/2} ∇²F P^{-1/2}`` (docs/theory.md §7) is symmetric:
  ``⟨u, Hv⟩ = ⟨Hu, v⟩`` up to rounding amplified by ``cond Σ_µµ`` (and ``cond A_N``), ``1/p_min``
  and the size of the sums (particles × sample);
* every Rayleigh quotient ``⟨x, Hx⟩ / ⟨x, x⟩`` lies in ``[λ_min, λ_max]`` (the dense
  eigensolver's extremes), the solver's own eigenvector attains ``λ_min`` with a small
  residual ``‖Hv − λv‖``, and ``λ_min ≤`` the quotient of every coordinate direction;
* the sampled landscape converges to the exact one: at ``N = ∞`` the mean error of
  ``L_∞`` over independent samples shrinks by a factor > 2 when the sample grows 64-fold
  (the ``n^{-1/2}`` rate predicts 8; docs/theory.md §3).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_properties import PROPERTY, QUADRATURE, SAMPLES, cases, rounding_tol

from landscape import (
    AttentionLandscape,
    ExactGaussianExpectation,
    ParticleMeasure,
    SampledExpectation,
    Teacher,
    get_activation,
)
from landscape.second_order.eigensolvers import smallest_eigenpairs
from landscape.second_order.operators import WassersteinHessian


def _operator(case) -> WassersteinHessian:
    measure = ParticleMeasure(case.a.numpy(), case.w.numpy(), case.p.numpy())
    return WassersteinHessian(case.landscape, measure)


@PROPERTY
@given(case=cases(prompt_lengths=(math.inf, 25)), seed=st.integers(0, 2**32 - 1))
def test_wasserstein_hessian_is_symmetric(case, seed):
    """``⟨u, Hv⟩ = ⟨Hu, v⟩`` for random ``u, v`` (H is a Hessian in an orthonormal frame)."""
    op = _operator(case)
    rng = np.random.default_rng(seed)
    u, v = (torch.as_tensor(rng.standard_normal(op.size)) for _ in range(2))
    hu, hv = op @ u, op @ v
    lhs, rhs = float(u @ hv), float(hu @ v)
    magnitude = float(torch.linalg.norm(u) * torch.linalg.norm(hv) + torch.linalg.norm(hu) * torch.linalg.norm(v))
    p_min = float(case.p.min())  # P^{-1/2} amplifies rounding by 1/p_min
    # the HVP sums over the sample (or quadrature nodes) and cancels large terms (Σ_µµ⁻¹ at small a)
    assert abs(lhs - rhs) <= rounding_tol(case.cond / p_min, op.size * SAMPLES, magnitude), case.label


@PROPERTY
@given(case=cases(prompt_lengths=(math.inf, 25)), seed=st.integers(0, 2**32 - 1))
def test_rayleigh_quotients_lie_between_the_extreme_eigenvalues(case, seed):
    op = _operator(case)
    result = smallest_eigenpairs(op, count=1, method="dense")
    dense = op.dense()
    dense = 0.5 * (dense + dense.T)
    eig = torch.linalg.eigvalsh(dense)
    lam_min, lam_max = float(result.eigenvalues[0]), float(eig[-1])
    spread = max(abs(lam_min), abs(lam_max), 1e-300)
    tol = rounding_tol(case.cond / float(case.p.min()), op.size * SAMPLES, spread)
    assert abs(lam_min - float(eig[0])) <= tol, case.label
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.standard_normal((op.size, 8)))
    x = torch.cat([x, torch.eye(op.size)[:, : min(op.size, 8)]], dim=1)  # and coordinate directions
    quotients = (x * op.matmat(x)).sum(0) / (x * x).sum(0)
    assert float(quotients.min()) >= lam_min - tol, case.label
    assert float(quotients.max()) <= lam_max + tol, case.label
    vec = result.vectors[:, 0]
    assert float(vec @ (op @ vec)) / float(vec @ vec) == pytest.approx(lam_min, abs=tol), case.label
    assert float(result.residuals[0]) <= 1e3 * tol + 1e-8 * spread, case.label


# ------------------------------------------------------------- exact = sampled
# A statistical property (a mean of 16 absolute errors must halve from n = 400 to 25 600): a random
# search over seeds eventually finds one where the small sample's errors cancel by chance
# (seed 464647360, tanh, m = 1: 5.9e-4 against 3.1e-4, the exact loss right to 7e-8). The
# examples are therefore drawn from a fixed sequence, so CI never meets a new unlucky draw.
@settings(parent=PROPERTY, derandomize=True)
@given(
    activation=st.sampled_from(("erf", "relu", "tanh")),
    d=st.integers(2, 4),
    k=st.integers(1, 2),
    extra=st.integers(0, 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_sampled_loss_converges_to_the_exact_loss(activation, d, k, extra, seed):
    rng = np.random.default_rng(seed)
    teacher = Teacher(np.eye(k), 1.2 * np.eye(d)[:k], activation)
    act = get_activation(activation)
    m = k + extra
    a = torch.as_tensor(rng.standard_normal((m, k)))
    w = torch.as_tensor(rng.standard_normal((m, d)) / math.sqrt(d))
    p = torch.full((m,), 1.0 / m)
    exact = AttentionLandscape(teacher, ExactGaussianExpectation(teacher, act, False, QUADRATURE))
    sigma = exact.moments(a, w, p)[0]
    eig = torch.linalg.eigvalsh(sigma)
    assume(float(eig[0]) > 1e-3 * float(eig[-1]))  # a well-posed L (§4)
    truth = float(exact.loss(a, w, p))

    def mean_error(n: int, repeats: int = 16) -> float:  # 16 draws: the mean error itself is a random variable
        errors = []
        for r in range(repeats):
            x = np.random.default_rng([seed % 2**31, n, r]).standard_normal((n, d))
            sampled = AttentionLandscape(teacher, SampledExpectation(teacher, act, x, False))
            errors.append(abs(float(sampled.loss(a, w, p)) - truth))
        return float(np.mean(errors))

    small, large = mean_error(400), mean_error(25_600)
    assert large < small / 2 or large < 1e-4 * max(truth, 1e-3), (small, large, truth)
