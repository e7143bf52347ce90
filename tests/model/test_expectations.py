"""Exact and sampled expectation backends, and the input laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import random_measure, random_teacher

from landscape import EmpiricalLaw, ExactGaussianExpectation, GaussianLaw, SampledExpectation, SphereLaw, get_activation


def _backends(teacher, n, seed, activation="erf", bias=False):
    act = get_activation(activation)
    exact = ExactGaussianExpectation(teacher, act, bias)
    sampled = SampledExpectation(teacher, act, GaussianLaw(teacher.dim).sample(n, seed), bias)
    return exact, sampled


@pytest.mark.parametrize("activation,bias", [("erf", False), ("tanh", False), ("sigmoid", True)])
def test_sampled_moments_converge_to_exact_at_rate_inverse_sqrt_n(activation, bias):
    """Mean |Σ_mc − Σ_exact| over seeds falls like n^{-1/2} (fitted slope within [−0.7, −0.3])."""
    rng = np.random.default_rng(7)
    teacher = random_teacher(rng, neurons=3, k0=2, d=3)
    measure = random_measure(rng, m=4, k=2, d=3 + int(bias))
    a, w, p = measure.tensors()
    sizes = [500, 2000, 8000, 32000]
    errors = []
    for n in sizes:
        per_seed = []
        for seed in range(12):
            exact, sampled = _backends(teacher, n, seed, activation, bias)
            me, ms = exact.moments(a, w, p), sampled.moments(a, w, p)
            diff = torch.cat([(me.sigma_mm - ms.sigma_mm).flatten(), (me.sigma_mt - ms.sigma_mt).flatten(), (exact.sigma_tt - sampled.sigma_tt).flatten()])
            per_seed.append(float(diff.norm()))
        errors.append(np.mean(per_seed))
    slope = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    assert -0.7 < slope < -0.3, (slope, errors)


def test_exact_backend_fourth_moment_agrees_with_an_independent_sample():
    rng = np.random.default_rng(3)
    teacher = random_teacher(rng, neurons=2, k0=2, d=3)
    a, w, p = random_measure(rng, m=3, k=2, d=3).tensors()
    exact = ExactGaussianExpectation(teacher, get_activation("erf"), fourth_samples=50_000, seed=1)
    sampled = SampledExpectation(teacher, get_activation("erf"), GaussianLaw(3).sample(50_000, 99))
    diff = exact.moments(a, w, p, fourth=True).fourth - sampled.moments(a, w, p, fourth=True).fourth
    stderr = exact.fourth_moment_stderr(a, w, p)
    assert 0 < stderr < 0.05
    assert float(diff.abs().max()) < 5 * math.sqrt(2) * stderr


def test_chunked_sampling_equals_one_pass():
    rng = np.random.default_rng(4)
    teacher = random_teacher(rng, neurons=2, k0=2, d=3)
    a, w, p = random_measure(rng, m=3, k=2, d=3).tensors()
    x = GaussianLaw(3).sample(1000, 0)
    act = get_activation("tanh")
    whole = SampledExpectation(teacher, act, x).moments(a, w, p, fourth=True)
    chunked = SampledExpectation(teacher, act, x, chunk_rows=97).moments(a, w, p, fourth=True)
    for lhs, rhs in zip(whole, chunked):
        torch.testing.assert_close(lhs, rhs, rtol=1e-13, atol=1e-14)


def test_probe_moments_of_the_exact_backend_match_sampling():
    rng = np.random.default_rng(5)
    teacher = random_teacher(rng, neurons=2, k0=2, d=3)
    a, w, p = random_measure(rng, m=3, k=2, d=3).tensors()
    probes = torch.tensor(rng.standard_normal((4, 3)))
    exact, sampled = _backends(teacher, 400_000, 0)
    pe, ps = exact.probe_moments(probes, a, w, p), sampled.probe_moments(probes, a, w, p)
    torch.testing.assert_close(pe.with_model, ps.with_model, atol=5e-3, rtol=0)
    torch.testing.assert_close(pe.with_teacher, ps.with_teacher, atol=5e-3, rtol=0)


def test_sphere_law_has_radius_sqrt_d_and_identity_covariance():
    x = SphereLaw(5).sample(200_000, 0)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), math.sqrt(5), rtol=1e-12)
    np.testing.assert_allclose(x.T @ x / x.shape[0], np.eye(5), atol=0.02)


def test_empirical_law_uses_all_rows_or_a_seeded_subsample():
    data = np.arange(20.0).reshape(10, 2)
    law = EmpiricalLaw(2, data)
    np.testing.assert_array_equal(law.sample(None, 0), data)
    sub = law.sample(4, 1)
    assert sub.shape == (4, 2) and len({tuple(r) for r in sub}) == 4
    np.testing.assert_array_equal(sub, law.sample(4, 1))
    with pytest.raises(ValueError, match="without replacement"):
        law.sample(11, 0)


@pytest.mark.parametrize("data", [np.zeros((0, 2)), np.zeros(3), np.array([[np.nan, 1.0]]), np.zeros((3, 4))])
def test_empirical_law_rejects_bad_data(data):
    with pytest.raises(ValueError):
        EmpiricalLaw(2, data)


def test_gaussian_law_rejects_bad_sample_sizes():
    with pytest.raises(ValueError, match="positive integer"):
        GaussianLaw(2).sample(0, 0)
