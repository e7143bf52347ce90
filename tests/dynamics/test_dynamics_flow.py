"""Tests of :mod:`landscape.dynamics.flow`: the particle velocity, the dissipation rate and
the energy identity ``dE/dt = −Σ p_i |∇δE/δµ(θ_i)|² (− α Σ p δ² − η‖∂_Γ L‖²)`` (docs/theory.md §6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import exact_landscape, orthogonal_teacher, random_measure

from landscape.dynamics import TABLEAUS, Layout, ParticleFlow, rk_step, rosenbrock23_step


def _setup(rng, eta=math.inf, alpha=0.0, uniform=True, m=3):
    landscape = exact_landscape(orthogonal_teacher(2, 3, 1.5), noise=0.1)
    measure = random_measure(rng, m, 2, 3, uniform=uniform)
    layout = Layout(m, 2, 3, not math.isinf(eta))
    a, w, p = measure.tensors()
    gamma = landscape.gamma_star(a, w, p) + 0.1 if layout.gamma else None
    flow = ParticleFlow(landscape, layout, eta, alpha)
    return landscape, measure, flow, layout.pack(a, w, p, gamma, 0.0)


def test_velocity_is_the_landscape_velocity(rng):
    """The flow's ``−dθ/dt`` (autograd of F, divided by p) equals ``AttentionLandscape.velocity``."""
    landscape, measure, flow, y = _setup(rng, uniform=False)
    a, w, p = measure.tensors()
    dy = flow(y)
    da, dw, _, _, _ = flow.layout.unpack(dy)
    reference = landscape.velocity(a, w, p)
    torch.testing.assert_close(-torch.cat([da, dw], 1), reference, rtol=1e-10, atol=1e-12)


def test_first_variation_matches_the_landscape(rng):
    landscape, measure, flow, y = _setup(rng, uniform=False)
    a, w, p = measure.tensors()
    info = flow.evaluate(y)
    reference = landscape.first_variation(a, w, p, a, w).numpy()
    np.testing.assert_allclose(info.first_variation, reference, rtol=1e-9, atol=1e-12)
    assert abs(float((p.numpy() * info.first_variation).sum())) < 1e-12


@pytest.mark.parametrize("eta, alpha", [(math.inf, 0.0), (math.inf, 2.0), (3.0, 0.0), (3.0, 1.5)])
def test_dissipation_rate_is_minus_the_energy_derivative(rng, eta, alpha):
    """``dD/dt`` equals ``−dE/dt`` along the field (central differences, O(ε²))."""
    _, _, flow, y = _setup(rng, eta, alpha, uniform=False)
    info = flow.evaluate(y)
    eps = 1e-5
    derivative = (flow.energy(y + eps * info.dy) - flow.energy(y - eps * info.dy)) / (2 * eps)
    assert info.rate > 0
    assert derivative == pytest.approx(-info.rate, rel=1e-7)


def _defect(flow, y0, scheme, h, time):
    y = y0
    for _ in range(round(time / h)):
        y, _ = rk_step(flow, y, flow(y), h, TABLEAUS[scheme])
    return flow.energy(y) - flow.energy(y0) + float(y[-1])


@pytest.mark.parametrize("scheme, order", [("euler", 1), ("heun", 2), ("rk4", 4)])
@pytest.mark.parametrize("eta, alpha", [(math.inf, 0.0), (4.0, 1.0)])
def test_energy_identity_holds_to_the_integrators_order(rng, scheme, order, eta, alpha):
    """``E(y_n) − E(y_0) + D_n`` is the integrator's global error: halving h divides it by 2^order."""
    _, _, flow, y0 = _setup(rng, eta, alpha)
    coarse = _defect(flow, y0, scheme, 0.01, 0.2)
    fine = _defect(flow, y0, scheme, 0.005, 0.2)
    assert abs(coarse / fine) == pytest.approx(2.0**order, rel=0.25)


def test_wfr_weights_stay_on_the_simplex(rng):
    _, _, flow, y = _setup(rng, alpha=3.0, uniform=False)
    for _ in range(20):
        y, _ = rk_step(flow, y, flow(y), 0.05, TABLEAUS["rk4"])
    p = flow.layout.unpack(y)[2]
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-13)
    assert bool((p > 0).all())


def test_layout_round_trip(rng):
    layout = Layout(4, 2, 3, True)
    a, w, p, g = (torch.randn(4, 2), torch.randn(4, 3), torch.rand(4), torch.randn(2, 2))
    y = layout.pack(a, w, p, g, 0.5)
    assert y.shape == (layout.size,)
    for got, want in zip(layout.unpack(y), (a, w, p, g, torch.tensor(0.5)), strict=True):
        torch.testing.assert_close(got, want)


def test_flow_refuses_gamma_mismatch(rng):
    landscape = exact_landscape(orthogonal_teacher(2, 3))
    with pytest.raises(ValueError, match="Γ"):
        ParticleFlow(landscape, Layout(2, 2, 3, False), timescale_ratio=2.0)


def _rosenbrock_defect(flow, y0, h, time):
    y = y0
    for _ in range(round(time / h)):
        linear = flow.linearize(y)
        y = rosenbrock23_step(flow, linear.jvp, y, linear.value.dy, h, krylov_rtol=1e-13).y
    return flow.energy(y) - flow.energy(y0) + float(y[-1])


@pytest.mark.parametrize("eta, alpha", [(math.inf, 0.0), (4.0, 1.0)])
def test_energy_identity_holds_to_second_order_with_rosenbrock(rng, eta, alpha):
    """The linearly implicit scheme (exact Jacobian by :meth:`ParticleFlow.linearize`) is of order 2 on the flow."""
    _, _, flow, y0 = _setup(rng, eta, alpha)
    coarse = _rosenbrock_defect(flow, y0, 0.02, 0.2)
    fine = _rosenbrock_defect(flow, y0, 0.01, 0.2)
    assert abs(coarse / fine) == pytest.approx(4.0, rel=0.25)


def _jacobian_by_differences(flow, y, eps=1e-4):
    """Dense ``∂f/∂y`` by the 5-point stencil (error O(ε⁴)), columns of every entry but ``D``."""
    columns = []
    for j in range(y.numel()):
        e = torch.zeros_like(y)
        e[j] = eps
        columns.append((-flow(y + 2 * e) + 8 * flow(y + e) - 8 * flow(y - e) + flow(y - 2 * e)) / (12 * eps))
    return torch.stack(columns, dim=1)


@pytest.mark.parametrize("eta, alpha", [(math.inf, 0.0), (math.inf, 2.0), (3.0, 0.0), (3.0, 1.5)])
def test_jacobian_vector_product_matches_the_dense_jacobian(rng, eta, alpha):
    """``linearize(y).jvp`` against the finite-difference Jacobian, every row (the ``D`` row too)."""
    _, _, flow, y = _setup(rng, eta, alpha, uniform=False)
    dense = _jacobian_by_differences(flow, y)
    dense[:, -1] = 0.0  # f does not depend on D
    linearization = flow.linearize(y)
    torch.testing.assert_close(linearization.value.dy, flow(y), rtol=1e-13, atol=1e-14)
    products = torch.stack([linearization.jvp(e) for e in torch.eye(y.numel(), dtype=y.dtype)], dim=1)
    torch.testing.assert_close(products, dense, rtol=1e-7, atol=1e-8 * float(dense.abs().max()))
    assert flow.jacobian_products == y.numel()
