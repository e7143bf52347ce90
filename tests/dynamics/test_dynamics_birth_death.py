"""Tests of :mod:`landscape.dynamics.birth_death`: the stochastic kill/clone step (Rotskoff et al. 2019)."""

from __future__ import annotations

import numpy as np
import pytest

from landscape.dynamics.birth_death import stochastic_birth_death


def test_no_events_when_the_first_variation_vanishes():
    theta = np.arange(12.0).reshape(4, 3)
    new, deaths, births = stochastic_birth_death(theta, np.zeros(4), 10.0, 0.1, np.random.default_rng(0))
    assert (deaths, births) == (0, 0) and np.array_equal(new, theta)


def test_particle_count_is_fixed_and_copies_are_existing_particles():
    theta = np.random.default_rng(1).standard_normal((6, 2))
    delta = np.array([3.0, -3.0, 1.0, -1.0, 0.0, 0.0])
    new, deaths, births = stochastic_birth_death(theta, delta, 1.0, 0.3, np.random.default_rng(2))
    assert new.shape == theta.shape and deaths + births > 0
    assert all(any(np.array_equal(row, old) for old in theta) for row in new)


def test_expected_mass_change_is_the_fisher_rao_rate():
    """E[copies of θ_i after a step] − 1 → −α h δ_i · M/(M−1) (pairing correction), error ~ R^{-1/2}."""
    m, alpha, h = 20, 1.0, 0.05
    delta = np.linspace(-1.0, 1.0, m)
    delta -= delta.mean()
    theta = np.arange(m, dtype=float)[:, None]
    rng = np.random.default_rng(3)
    for reps in (200, 20_000):
        counts = np.zeros(m)
        for _ in range(reps):
            new, _, _ = stochastic_birth_death(theta, delta, alpha, h, rng)
            counts += np.bincount(new[:, 0].astype(int), minlength=m)
        change = counts / reps - 1.0
        expected = -alpha * h * delta * m / (m - 1)
        assert np.abs(change - expected).max() < 6 * np.sqrt(alpha * h / reps) + 2 * (alpha * h) ** 2


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        stochastic_birth_death(np.zeros((3, 2)), np.zeros(2), 1.0, 0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="two particles"):
        stochastic_birth_death(np.zeros((1, 2)), np.zeros(1), 1.0, 0.1, np.random.default_rng(0))
