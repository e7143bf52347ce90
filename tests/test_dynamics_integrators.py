"""Tests of :mod:`landscape.dynamics.integrators` on ODEs with known solutions."""

from __future__ import annotations

import math

import pytest
import torch

from landscape.dynamics.integrators import TABLEAUS, StepSizeUnderflow, adaptive_step, rk_step


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
