"""Tests of :mod:`landscape.dynamics.rosenbrock` on ODEs with known solutions: order, error
estimate, L-stability, stiff problems against the explicit pair, and unconverged solves."""

from __future__ import annotations

import math

import pytest
import torch

from landscape.dynamics.integrators import TABLEAUS, StepSizeUnderflow, adaptive_step
from landscape.dynamics.rosenbrock import adaptive_rosenbrock_step, rosenbrock23_step

DTYPE = torch.float64


def _pendulum(y):
    return torch.stack([y[1], -torch.sin(y[0])])


def _pendulum_jvp_at(y):
    def jvp(v):
        return torch.stack([v[1], -torch.cos(y[0]) * v[0]])

    return jvp


def _pendulum_reference(time):
    """The pendulum from (1, 0) at ``time``, by dopri5 at rtol 1e-13."""
    y, t, h = torch.tensor([1.0, 0.0], dtype=DTYPE), 0.0, 1e-3
    mask = torch.ones(2, dtype=torch.bool)
    while t < time - 1e-15:
        result = adaptive_step(_pendulum, y, _pendulum(y), h, TABLEAUS["dopri5"], 1e-13, 1e-15, mask, h_max=time - t)
        y, t, h = result.y, t + result.h, result.h_next
    return y


def _fixed_steps(h, time=1.0):
    y = torch.tensor([1.0, 0.0], dtype=DTYPE)
    for _ in range(round(time / h)):
        y = rosenbrock23_step(_pendulum, _pendulum_jvp_at(y), y, _pendulum(y), h, krylov_rtol=1e-14).y
    return y


def test_global_error_is_second_order():
    """Halving h divides the global error by 4 (order 2, Shampine & Reichelt 1997)."""
    reference = _pendulum_reference(1.0)
    errors = [float(torch.linalg.norm(_fixed_steps(h) - reference)) for h in (0.1, 0.05, 0.025)]
    assert errors[0] / errors[1] == pytest.approx(4.0, rel=0.1)
    assert errors[1] / errors[2] == pytest.approx(4.0, rel=0.1)


@pytest.mark.parametrize("wrong", ["scaled", "zero"])
def test_order_two_holds_for_any_jacobian(wrong):
    """A W-method (Shampine & Reichelt 1997): order 2 with any ``J``, so inexact Krylov solves
    cost no order (the error estimate and the damping of stiff modes do rest on ``J``)."""
    reference = _pendulum_reference(1.0)

    def approximate(y):
        exact = _pendulum_jvp_at(y)
        if wrong == "zero":
            return lambda v: 0.0 * v
        return lambda v: 0.5 * exact(v) + torch.stack([0.3 * v[0], -0.7 * v[1]])

    errors = []
    for h in (0.1, 0.05, 0.025):
        y = torch.tensor([1.0, 0.0], dtype=DTYPE)
        for _ in range(round(1.0 / h)):
            y = rosenbrock23_step(_pendulum, approximate(y), y, _pendulum(y), h, krylov_rtol=1e-14).y
        errors.append(float(torch.linalg.norm(y - reference)))
    assert errors[0] / errors[1] == pytest.approx(4.0, rel=0.1)
    assert errors[1] / errors[2] == pytest.approx(4.0, rel=0.1)


def test_error_estimate_is_the_local_error():
    """The estimate ``h/6 (k1 − 2 k2 + k3)`` is ``O(h³)`` and within a factor 3 of the true local error."""
    y = torch.tensor([1.0, 0.0], dtype=DTYPE)
    estimates = []
    for h in (0.1, 0.05):
        step = rosenbrock23_step(_pendulum, _pendulum_jvp_at(y), y, _pendulum(y), h, krylov_rtol=1e-14)
        true_error = float(torch.linalg.norm(step.y - _pendulum_reference(h)))
        estimates.append(float(torch.linalg.norm(step.error)))
        assert true_error / 3 < estimates[-1] < 3 * true_error
    assert estimates[0] / estimates[1] == pytest.approx(8.0, rel=0.2)


@pytest.mark.parametrize("z", [-1e2, -1e4, -1e8])
def test_l_stability(z):
    """For ``y' = λy`` one step multiplies by ``R(hλ)`` with ``|R(z)| ≤ 5/|z|``: stiff modes are damped."""
    lam = z / 0.1
    y = torch.ones(1, dtype=DTYPE)
    step = rosenbrock23_step(lambda u: lam * u, lambda v: lam * v, y, lam * y, 0.1)
    assert step.converged
    assert abs(float(step.y)) <= 5.0 / abs(z)


def _stiff_system():
    """``y' = A y`` with eigenvalues −1 and −1e4 in a rotated basis (not diagonal, so GMRES works)."""
    q = torch.linalg.qr(torch.tensor([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [1.5, 0.2, 1.0]], dtype=DTYPE))[0]
    a = q @ torch.diag(torch.tensor([-1.0, -3.0, -1e4], dtype=DTYPE)) @ q.T
    return a, (lambda y: a @ y)


def _integrate(step_fn, y, time):
    t, h, steps, products = 0.0, 1e-3, 0, 0
    while t < time - 1e-15:
        result = step_fn(y, h, time - t)
        y, t, h, steps, products = result.y, t + result.h, result.h_next, steps + 1, products + result.products
    return y, steps, products


def test_stiff_problem_takes_few_steps_and_is_accurate():
    """On a stiffness ratio of 1e4 rosenbrock23 takes ≥ 20× fewer steps than rk23 at the same tolerance."""
    a, f = _stiff_system()
    y0 = torch.tensor([1.0, -1.0, 2.0], dtype=DTYPE)
    exact = torch.linalg.matrix_exp(2.0 * a) @ y0
    mask = torch.ones(3, dtype=torch.bool)
    rtol, atol = 1e-5, 1e-8

    def implicit(y, h, h_max):
        return adaptive_rosenbrock_step(f, lambda v: a @ v, y, f(y), h, rtol, atol, mask, h_max=h_max)

    def explicit(y, h, h_max):
        return adaptive_step(f, y, f(y), h, TABLEAUS["rk23"], rtol, atol, mask, h_max=h_max)

    y_implicit, steps_implicit, products = _integrate(implicit, y0, 2.0)
    y_explicit, steps_explicit, _ = _integrate(explicit, y0, 2.0)
    assert float(torch.linalg.norm(y_implicit - exact)) < 100 * rtol * float(torch.linalg.norm(exact))
    assert float(torch.linalg.norm(y_explicit - exact)) < 100 * rtol * float(torch.linalg.norm(exact))
    assert steps_explicit > 20 * steps_implicit
    assert products > 0


def test_unconverged_solves_reject_the_step():
    """With one product per solve GMRES cannot converge at a large step: the step is rejected and shrunk."""
    a, f = _stiff_system()
    y = torch.tensor([1.0, -1.0, 2.0], dtype=DTYPE)
    mask = torch.ones(3, dtype=torch.bool)
    step = rosenbrock23_step(f, lambda v: a @ v, y, f(y), 0.1, krylov_rtol=1e-10, krylov_maxiter=1)
    assert not step.converged and step.residual > 1e-10
    result = adaptive_rosenbrock_step(f, lambda v: a @ v, y, f(y), 0.1, 1e-6, 1e-9, mask, krylov_rtol=1e-10, krylov_maxiter=1)
    assert result.rejected > 0 and result.h < 0.1 * 0.5**10
    with pytest.raises(StepSizeUnderflow):
        adaptive_rosenbrock_step(f, lambda v: a @ v, y, f(y), 0.1, 1e-6, 1e-9, mask, h_min=1e-3, krylov_rtol=1e-10, krylov_maxiter=1)


def test_non_finite_field_rejects_then_underflows():
    def blow_up(y):
        return torch.full_like(y, math.nan)

    y = torch.ones(2, dtype=DTYPE)
    with pytest.raises(StepSizeUnderflow):
        adaptive_rosenbrock_step(blow_up, lambda v: v, y, torch.ones(2, dtype=DTYPE), 0.1, 1e-6, 1e-9, torch.ones(2, dtype=torch.bool))
