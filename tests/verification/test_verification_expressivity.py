"""The expressivity claim (docs/theory.md §10.1) and its comparison models.

The comparators are checked against sampling (convergence as the sample grows) and against
cases with a known answer; the claim runs in the quick profile, and a frozen MLP (the flow
replaced by its initial measure) makes it fail.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from landscape.cases import orthogonal_teacher_tables
from landscape.dynamics.config import InitConfig
from landscape.dynamics.initialisation import initial_measure
from landscape.io.problem import parse_problem
from landscape.landscape import AttentionLandscape
from landscape.model.expectations import ExactGaussianExpectation
from landscape.model.measure import ParticleMeasure
from landscape.model.teacher import Teacher
from verification.analysis import fit_power, relative_excess
from verification.claims import expressivity
from verification.comparators import (
    explained_by,
    linear_attention_risk_sampled,
    linear_attention_risk_stein,
    random_feature_risk,
    signal,
)
from verification.parallel import TaskPool
from verification.profiles import Profile, get_profile
from verification.scenarios import prepare_evidence_dir

ONE_SEED = Profile("quick", seeds=1, scale=1.0)


@pytest.mark.parametrize("activation", ["erf", "tanh"])
def test_stein_linear_risk_is_the_limit_of_least_squares(activation):
    """Closed form (erf) or Gauss–Hermite (tanh) vs least squares on growing samples: error shrinks like n^-1/2."""
    rng = np.random.default_rng(3)
    teacher = Teacher(rng.standard_normal((3, 2)), 1.2 * rng.standard_normal((3, 4)) / 2, activation)
    big = rng.standard_normal((400_000, 4))
    f = teacher(torch.as_tensor(big)).numpy()
    sigma_tt = f.T @ f / big.shape[0]
    stein, cross = linear_attention_risk_stein(teacher, sigma_tt, noise=0.1)
    np.testing.assert_allclose(cross, big.T @ f / big.shape[0], atol=5 / math.sqrt(big.shape[0]))
    errors = [abs(linear_attention_risk_sampled(teacher, big[:n], 0.1) - stein) for n in (4_000, 400_000)]
    assert errors[1] < 5e-3 and errors[1] < errors[0] + 1e-4


def test_random_features_at_the_teacher_reach_the_floor_and_random_ones_do_not():
    landscape = parse_problem(orthogonal_teacher_tables(neurons=2, dim=4, scale=2.0, noise=0.1)).landscape()
    teacher_w = landscape.teacher.u
    assert random_feature_risk(landscape, teacher_w) == pytest.approx(0.5 * 0.1**2, abs=1e-12)
    w = np.random.default_rng(0).standard_normal((2, 4)) / 2
    assert relative_excess(random_feature_risk(landscape, w), landscape.noise, signal(landscape)) > 0.1
    # more random features never explain less (nested spans)
    wide = np.concatenate([w, np.random.default_rng(1).standard_normal((30, 4)) / 2])
    assert random_feature_risk(landscape, wide) <= random_feature_risk(landscape, w) + 1e-12


def test_explained_by_drops_dependent_directions_and_fit_power_recovers_exponents():
    sigma = np.diag([2.0, 1e-20])
    cross = np.array([[1.0], [0.0]])
    assert explained_by(sigma, cross) == pytest.approx(0.5)
    x = np.logspace(0, 3, 7)
    slope, intercept, rms = fit_power(x, 3.0 * x**-1.0)
    assert slope == pytest.approx(-1.0) and intercept == pytest.approx(math.log(3.0)) and rms < 1e-12


@pytest.mark.slow
def test_expressivity_quick_profile_passes(tmp_path):
    result = expressivity.check(get_profile("quick"), prepare_evidence_dir(tmp_path / "expressivity"), TaskPool())
    assert result.verdict == "pass", result.metrics
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert m["mlp_unexplained_worst"] <= expressivity.REACH_TOL
    assert m["linear_unexplained"] > 0.1 and m["random_feature_unexplained_min"] > 0.1
    assert abs(m["linear_stein_minus_sampled"]) < 2e-3
    assert m["finite_n_slope"] == pytest.approx(-1.0, abs=expressivity.SLOPE_TOL)
    assert m["simulation_z"] <= expressivity.SIM_SIGMAS
    assert (tmp_path / "expressivity" / "expressivity.json").is_file()
    widths = [row["unexplained"] for row in result.table if str(row["model"]).startswith("frozen random")]
    assert widths == sorted(widths, reverse=True)  # wider random features explain more, never all of it here


def test_a_frozen_mlp_makes_expressivity_fail(tmp_path, monkeypatch):
    """Can-fail: with the flow replaced by its initial measure the MLP is a random-feature model."""
    problem = expressivity.PROBLEM

    def frozen(directory, seed, time):
        landscape = parse_problem(problem).landscape()
        config = InitConfig(kind="gaussian", particles=expressivity.PARTICLES, scale=expressivity.INIT_SCALE, seed=seed)
        return initial_measure(config, landscape, problem["model"]["features"])

    monkeypatch.setattr(expressivity, "_trained_measure", frozen)
    monkeypatch.setattr(expressivity, "_simulate", lambda *args: {"loss_n": 0.0, "simulated": 0.0, "stderr": 1.0, "z": 0.0})
    result = expressivity.check(ONE_SEED, prepare_evidence_dir(tmp_path / "expressivity"), TaskPool())
    assert result.verdict == "fail"
    assert result.metrics["mlp_unexplained_worst"].value > expressivity.CANNOT_TOL


@pytest.mark.parametrize("case", range(len(expressivity.MOMENT_CASES)))
def test_exact_moments_agree_with_monte_carlo_in_every_kernel_case(case):
    teacher, student, bias = expressivity.MOMENT_CASES[case]
    row = expressivity._moment_case(teacher, student, bias, expressivity.MOMENT_SAMPLES, case)
    assert row["max_z"] <= expressivity.MOMENT_SIGMAS and row["max_abs"] < 0.05
    assert row["gamma_gap"] <= expressivity.GAMMA_RTOL


def test_the_moment_check_flags_a_wrong_relu_kernel_and_a_wrong_teacher_activation(monkeypatch):
    kernels = importlib.import_module("landscape.model.kernels")
    true_relu = kernels.relu_kernel
    monkeypatch.setattr(kernels, "relu_kernel", lambda u, v: true_relu(u, v) - 0.25 * (u @ v.T))  # linear term halved
    assert expressivity._moment_case("relu", "relu", False, expressivity.MOMENT_SAMPLES, 1)["max_z"] > expressivity.MOMENT_SIGMAS
    monkeypatch.undo()

    def student_for_teacher(self, w):
        u1, b1 = (w[:, :-1], w[:, -1]) if self.bias else (w, None)
        return kernels.gaussian_kernel(self.activation, u1, b1, self.activation, self._u, None, self.quadrature)

    monkeypatch.setattr(ExactGaussianExpectation, "_kernel_teacher", student_for_teacher)
    assert expressivity._moment_case("sigmoid", "tanh", True, expressivity.MOMENT_SAMPLES, 2)["max_z"] > expressivity.MOMENT_SIGMAS


def test_the_gamma_check_flags_a_transposed_gamma_star(monkeypatch):
    true_gamma = AttentionLandscape.gamma_from_moments
    monkeypatch.setattr(AttentionLandscape, "gamma_from_moments", lambda self, *m: true_gamma(self, *m).T)
    assert expressivity._moment_case("erf", "erf", False, 10_000, 0)["gamma_gap"] > expressivity.GAMMA_RTOL


def _finite_n_at_a_random_measure() -> dict:
    landscape = parse_problem(expressivity.PROBLEM).landscape()
    rng = np.random.default_rng(5)
    measure = ParticleMeasure(rng.standard_normal((2, 2)), rng.standard_normal((2, 4)) / 2)
    return expressivity._finite_n(landscape, measure, (2.0, 4.0), 5)


def test_the_one_over_n_coefficient_matches_its_closed_form_and_flags_a_wrong_k_mu(monkeypatch):
    row = _finite_n_at_a_random_measure()
    assert row["coefficient_error"] <= expressivity.COEFF_RTOL and row["slope"] == pytest.approx(-1.0, abs=0.01)

    def without_noise(self, sigma_mm, sigma_mt, fourth):  # τ² dropped from K_µ = Q_µ + τ²Σ_µµ
        n = float(self.prompt_length)
        return (1.0 - 1.0 / n) * sigma_mt @ sigma_mt.T + fourth / n

    monkeypatch.setattr(AttentionLandscape, "_attention_covariance", without_noise)
    wrong = _finite_n_at_a_random_measure()
    assert wrong["coefficient_error"] > expressivity.FAIL_COEFF
    assert wrong["slope"] == pytest.approx(-1.0, abs=0.01)  # the slope alone cannot see it


def test_a_wrong_kernel_makes_expressivity_fail(tmp_path, monkeypatch):
    """Can-fail at claim level: a ReLU kernel with its linear term halved (the flow, on erf, is untouched)."""
    kernels = importlib.import_module("landscape.model.kernels")
    true_relu = kernels.relu_kernel
    monkeypatch.setattr(kernels, "relu_kernel", lambda u, v: true_relu(u, v) - 0.25 * (u @ v.T))
    result = expressivity.check(ONE_SEED, prepare_evidence_dir(tmp_path / "expressivity"), TaskPool())
    assert result.verdict == "fail"
    assert result.metrics["moment_max_z"].value > expressivity.MOMENT_SIGMAS
