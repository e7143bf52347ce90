"""Tests of :mod:`landscape.dynamics.integrators` on ODEs with known solutions."""

from __future__ import annotations

import math

import pytest
import torch

from landscape.dynamics.integrators import (
    STIFF_RATIO,
    TABLEAUS,
    StepSizeUnderflow,
    Tableau,
    adaptive_step,
    real_stability_boundary,
    rk_step,
    stability_polynomial,
)


def _rotation(y):
    return torch.stack([-y[1], y[0]])


def _integrate(scheme, h, time=1.0):
    y = torch.tensor([1.0, 0.0])
    for _ in range(round(time / h)):
        y, _ = rk_step(_rotation, y, _rotation(y), h, TABLEAUS[scheme])
    return float(torch.linalg.norm(y - torch.tensor([math.cos(time), math.sin(time)])))


@pytest.mark.parametrize("scheme, order", [("euler", 1), ("heun", 2), ("rk4", 4), ("rk23", 3), ("dopri5", 5)])
def test_fixed_step_order(scheme, order):
    """Halving h divides the global error by 2^order (Hairer–Nørsett–Wanner, Thm II.3.6)."""
    ratio = _integrate(scheme, 0.1) / _integrate(scheme, 0.05)
    assert ratio == pytest.approx(2.0**order, rel=0.15)


@pytest.mark.parametrize("scheme", ["rk23", "dopri5"])
@pytest.mark.parametrize("rtol", [1e-4, 1e-8])
def test_adaptive_error_follows_tolerance(scheme, rtol):
    y, t, h = torch.tensor([1.0, 0.0]), 0.0, 0.1
    mask = torch.ones(2, dtype=torch.bool)
    while t < 2.0 - 1e-15:
        result = adaptive_step(_rotation, y, _rotation(y), h, TABLEAUS[scheme], rtol, rtol * 1e-2, mask, h_max=2.0 - t)
        y, t, h = result.y, t + result.h, result.h_next
    error = float(torch.linalg.norm(y - torch.tensor([math.cos(2.0), math.sin(2.0)])))
    assert t == pytest.approx(2.0, abs=1e-14)
    assert error < 100 * rtol


def test_adaptive_rejects_and_underflows():
    def blow_up(y):
        return torch.full_like(y, math.nan)

    with pytest.raises(StepSizeUnderflow):
        adaptive_step(blow_up, torch.ones(1), torch.ones(1), 0.1, TABLEAUS["rk23"], 1e-6, 1e-9, torch.ones(1, dtype=torch.bool))


def test_adaptive_needs_embedded_pair():
    with pytest.raises(ValueError, match="embedded"):
        adaptive_step(_rotation, torch.ones(2), torch.ones(2), 0.1, TABLEAUS["rk4"], 1e-6, 1e-9, torch.ones(2, dtype=torch.bool))


# ------------------------------------------------------------------ stiffness detection
_EIGENVALUES = (-1.0, -1e4)


def _linear_system():
    """``y' = A y`` with ``A = Q diag(−1, −1e4) Qᵀ``, ``Q`` a rotation by 0.5 (the modes mix the components)."""
    c, s = math.cos(0.5), math.sin(0.5)
    q = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    a = q @ torch.diag(torch.tensor(_EIGENVALUES, dtype=torch.float64)) @ q.T
    return lambda y: a @ y


@pytest.mark.parametrize("scheme, boundary", [("euler", 2.0), ("rk4", 2.785293563), ("rk23", 2.512745327), ("dopri5", 3.306567893)])
def test_real_stability_boundary(scheme, boundary):
    """From the stability polynomial (rk23: 1 + z + z²/2 + z³/6; dopri5: Σ_{n≤5} zⁿ/n! + z⁶/600): |R(−x)| = 1."""
    tableau = TABLEAUS[scheme]
    x = real_stability_boundary(tableau)
    assert x == pytest.approx(boundary, abs=1e-8)
    coefficients = stability_polynomial(tableau)
    assert abs(sum(c * (-x) ** n for n, c in enumerate(coefficients))) == pytest.approx(1.0, abs=1e-9)
    if scheme == "dopri5":
        assert coefficients[-1] == pytest.approx(1 / 600)


@pytest.mark.parametrize("scheme", ["rk23", "dopri5"])
@pytest.mark.parametrize("h", [1e-5, 1e-4, 2.4e-4])
def test_stiffness_estimate_is_the_stiff_eigenvalue(scheme, h):
    """Once the stiff mode dominates the step (here from y₀ = (1, 1), after a few steps), h·ρ = h·|λ_max|."""
    f, tableau = _linear_system(), TABLEAUS[scheme]
    y, mask = torch.tensor([1.0, 1.0], dtype=torch.float64), torch.ones(2, dtype=torch.bool)
    for _ in range(3):  # loose tolerances: every trial step is accepted, at the given h
        result = adaptive_step(f, y, f(y), h, tableau, 1e3, 1e3, mask)
        assert result.h == h and result.rejected == 0
        y = result.y
        assert result.stiffness * real_stability_boundary(tableau) == pytest.approx(h * 1e4, rel=1e-3)


@pytest.mark.parametrize("scheme", ["rk23", "dopri5"])
def test_adaptive_step_settles_at_the_stability_boundary(scheme):
    """On y' = Ay, λ = −1, −1e4, once the stiff transient has decayed the controller holds h at
    boundary/1e4 and the reported ratio h·ρ/boundary is ≈ 1, i.e. it measures h·|λ_max| where
    accuracy alone would allow far larger steps."""
    f, tableau = _linear_system(), TABLEAUS[scheme]
    y, h, mask = torch.tensor([1.0, 1.0], dtype=torch.float64), 1e-3, torch.ones(2, dtype=torch.bool)
    steps, ratios = [], []
    for _ in range(500):
        result = adaptive_step(f, y, f(y), h, tableau, 1e-6, 1e-9, mask)
        y, h = result.y, result.h_next
        steps.append(result.h * 1e4 / real_stability_boundary(tableau))
        ratios.append(result.stiffness)
    late_steps, late = sorted(steps[-100:]), sorted(ratios[-100:])
    assert late_steps[50] == pytest.approx(1.0, abs=0.05)  # h·|λ_max| at the boundary
    assert late[50] == pytest.approx(1.0, abs=0.05)  # and the estimate says so
    assert late[10] >= STIFF_RATIO  # 90% of the steps are judged stability-limited
    assert max(ratios[:5]) < 0.2  # the first steps, on the resolved stiff transient, are not


@pytest.mark.parametrize("scheme", ["rk23", "dopri5"])
def test_non_stiff_rotation_stays_well_below(scheme):
    """The rotation (eigenvalues ±i) at rtol = 1e-4: the step follows accuracy, the ratio stays < 0.25."""
    y, h, mask = torch.tensor([1.0, 0.0]), 0.1, torch.ones(2, dtype=torch.bool)
    ratios = []
    for _ in range(60):
        result = adaptive_step(_rotation, y, _rotation(y), h, TABLEAUS[scheme], 1e-4, 1e-6, mask)
        y, h = result.y, result.h_next
        ratios.append(result.stiffness)
    assert all(r is not None for r in ratios)
    assert max(ratios) < 0.25


def test_schemes_without_a_probe_report_no_stiffness():
    """A pair without a stiffness probe (and rk_step's two-value return) stays as it was."""
    pair = TABLEAUS["rk23"]
    bare = Tableau(a=pair.a, b=pair.b, b_low=pair.b_low, order=pair.order)
    y, mask = torch.tensor([1.0, 0.0]), torch.ones(2, dtype=torch.bool)
    assert adaptive_step(_rotation, y, _rotation(y), 0.1, bare, 1e-4, 1e-6, mask).stiffness is None
    assert len(rk_step(_rotation, y, _rotation(y), 0.1, pair)) == 2
