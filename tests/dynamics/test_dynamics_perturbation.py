"""Tests of :mod:`landscape.dynamics.perturbation`: the isotropic ball draw and the Hessian-guided
draw with covariance ``H_µ²`` (checked against a dense float64 Hessian)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import dead_neuron_saddle, exact_landscape, random_measure

from landscape.dynamics.perturbation import hessian_kick, isotropic_kick


def test_isotropic_kick_is_uniform_in_the_ball():
    """Uniform in the ball of radius r: |v| ≤ r, P(|v| ≤ r·2^{−1/dim}) = ½, mean 0 (error ~ n^{−1/2})."""
    rng = np.random.default_rng(0)
    for n in (1_000, 100_000):
        v = isotropic_kick(n, 5, 0.3, rng)
        norms = np.linalg.norm(v, axis=1)
        assert v.shape == (n, 5) and norms.max() <= 0.3
        assert np.mean(norms <= 0.3 * 0.5 ** (1 / 5)) == pytest.approx(0.5, abs=4 / np.sqrt(n))
        assert np.abs(v.mean(axis=0)).max() < 4 * 0.3 / np.sqrt(n)


def test_hessian_kick_matches_the_dense_reference(rng):
    """v = r P^{-1/2} Ĥ z / |Ĥ z| with Ĥ = P^{-1/2} ∇²F P^{-1/2} built densely by torch.func.hessian."""
    teacher, _ = dead_neuron_saddle(3, 5)
    landscape = exact_landscape(teacher)
    measure = random_measure(rng, 4, 3, 5, uniform=False)
    kick = hessian_kick(landscape, measure, 0.01, np.random.default_rng(7))
    objective, theta = landscape.objective(measure)
    hessian = torch.func.hessian(objective)(theta).numpy()
    root = np.repeat(np.sqrt(measure.p), 8)
    z = np.random.default_rng(7).standard_normal(theta.numel())
    xi = (hessian / root[:, None] / root[None, :]) @ z
    expected = (0.01 * xi / np.linalg.norm(xi) / root).reshape(4, 8)
    np.testing.assert_allclose(kick, expected, rtol=1e-9, atol=1e-14)
    assert np.sqrt((measure.p * (kick**2).sum(1)).sum()) == pytest.approx(0.01)


def test_hessian_kick_aims_at_negative_curvature():
    """At the §9 saddle the draw has a clear component along ψ0 (the escape direction)."""
    teacher, saddle = dead_neuron_saddle(3, 5)
    landscape = exact_landscape(teacher)
    objective, theta = landscape.objective(saddle)
    hessian = torch.func.hessian(objective)(theta).numpy() * saddle.size  # uniform p: Ĥ = M ∇²F
    values, vectors = np.linalg.eigh(hessian)
    assert values[0] < 0
    overlaps = [
        abs(hessian_kick(landscape, saddle, 1.0, np.random.default_rng(s)).reshape(-1) @ vectors[:, 0]) / np.sqrt(saddle.size)
        for s in range(20)
    ]
    assert np.median(overlaps) > 0.01
