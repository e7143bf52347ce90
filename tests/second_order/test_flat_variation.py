"""Flat second variation along µ_s = (1 − s)µ + sν and the curvature test of docs/theory.md §7."""

import numpy as np
import pytest
import torch

from landscape.cases import dead_neuron_saddle, orthogonal_teacher_landscape, teacher_measure
from landscape.model.measure import ParticleMeasure
from landscape.second_order.flat_variation import curvature_test, flat_derivatives, pushed_teacher, trust_region_minimum
from landscape.second_order.references import flat_second_variation_closed_form


def _mix_loss(landscape, mu, nu, s):
    a = np.concatenate([mu.a, nu.a])
    w = np.concatenate([mu.w, nu.w])
    p = np.concatenate([(1 - s) * mu.p, s * nu.p])
    return float(landscape.loss(*(torch.as_tensor(x) for x in (a, w, p))))


@pytest.mark.parametrize("seed", [0, 1])
def test_flat_derivatives_match_finite_differences_and_the_closed_form(seed):
    """Autograd in s, the moment closed form, and central differences (error O(h²)) agree."""
    landscape = orthogonal_teacher_landscape(2, 4)
    rng = np.random.default_rng(seed)
    mu = ParticleMeasure(rng.standard_normal((3, 2)), 0.8 * rng.standard_normal((3, 4)), rng.dirichlet(np.ones(3)))
    nu = ParticleMeasure(rng.standard_normal((2, 2)), 0.8 * rng.standard_normal((2, 4)))
    d1, d2 = flat_derivatives(landscape, mu, nu)
    assert d2 == pytest.approx(flat_second_variation_closed_form(landscape, mu, nu), rel=1e-9, abs=1e-12)
    f = lambda s: _mix_loss(landscape, mu, nu, s)  # noqa: E731
    fd = [(f(h) - 2 * f(0.0) + f(-h)) / h**2 for h in (2e-3, 1e-3)]
    assert abs(fd[1] - d2) < abs(fd[0] - d2) / 2 + 1e-7
    richardson = (4 * fd[1] - fd[0]) / 3  # O(h⁴)
    assert richardson == pytest.approx(d2, rel=1e-5, abs=1e-7)
    assert (f(1e-4) - f(-1e-4)) / 2e-4 == pytest.approx(d1, rel=1e-5, abs=1e-8)


def test_pushed_teacher_has_features_r_f():
    """h_{ν_R} = R f°: Σ_{ν°} = R Σ_°° for the erf teacher and student."""
    landscape = orthogonal_teacher_landscape(3, 4)
    r = np.arange(9.0).reshape(3, 3) / 10
    nu = pushed_teacher(landscape, r)
    m = landscape.moments(*nu.tensors())
    sigma_tt = landscape.expectation.sigma_tt.numpy()
    np.testing.assert_allclose(m.sigma_mt.numpy(), r @ sigma_tt, atol=1e-12)


def test_trust_region_minimum_beats_random_feasible_points():
    rng = np.random.default_rng(0)
    for case in range(6):
        m = 5
        h = rng.standard_normal((m, m))
        h = h + h.T + (6.0 if case % 2 else 0.0) * np.eye(m)
        g = np.zeros(m) if case == 4 else rng.standard_normal(m)  # case 4: the hard case
        radius = 0.7
        r = trust_region_minimum(h, g, radius)
        q = lambda x: g @ x + 0.5 * x @ h @ x  # noqa: E731
        assert np.linalg.norm(r) <= radius * (1 + 1e-9)
        samples = rng.standard_normal((4000, m))
        samples *= radius * rng.random((4000, 1)) ** (1 / m) / np.linalg.norm(samples, axis=1, keepdims=True)
        assert q(r) <= min(q(x) for x in samples) + 1e-10
    with pytest.raises(ValueError, match="radius"):
        trust_region_minimum(np.eye(2), np.ones(2), 0.0)


def test_curvature_test_at_the_dead_neuron_saddle():
    """At the §9 saddle the optimised ν_R gives negative curvature below −4/(k R₁²) · L(µ)² (the bound holds)."""
    landscape = orthogonal_teacher_landscape(3, 4)
    mu = dead_neuron_saddle(3, 4)
    result = curvature_test(landscape, mu)
    assert np.linalg.norm(result.map) == pytest.approx(np.sqrt(3), rel=1e-9)
    d1, d2 = flat_derivatives(landscape, mu, pushed_teacher(landscape, result.map))
    assert result.second_variation == pytest.approx(d2, rel=1e-12)
    assert result.second_variation < 0 and result.bound_holds
    assert result.ratio == pytest.approx(result.second_variation / result.loss**2)
    assert result.bound_constant == pytest.approx(4 / (3 * result.r1**2))
    # the optimum spends R on the missing feature: any other direction of the same norm does no better
    for r in (np.sqrt(3) * np.eye(3)[[2]].T @ np.eye(3)[[2]], np.eye(3)):
        assert flat_derivatives(landscape, mu, pushed_teacher(landscape, r))[1] >= result.second_variation - 1e-9


def test_curvature_test_at_the_teacher_has_no_ratio():
    result = curvature_test(orthogonal_teacher_landscape(2, 3), teacher_measure(2, 3))
    assert result.loss == pytest.approx(0.0, abs=1e-14) and result.ratio is None and not result.bound_holds
    with pytest.raises(ValueError, match="norm"):
        curvature_test(orthogonal_teacher_landscape(2, 3), teacher_measure(2, 3), norm=-1.0)
