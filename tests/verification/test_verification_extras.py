"""The extra checks the paper suggests beyond its proofs (issue 5), in the quick profile.

real-data, feature-mismatch, ill-conditioning, collinear-teacher, escape-vs-dimension: each
runs and reports sane metrics and a table; their building blocks are checked against known
answers (closed forms, sampling).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landscape.dynamics import flow as flow_module
from landscape.dynamics.perturbation import isotropic_kick
from landscape.io.problem import parse_problem
from landscape.landscape import AttentionLandscape, SingularMomentError
from landscape.model.expectations import ExactGaussianExpectation
from verification.baseline import compare
from verification.claims import collinear_teacher, escape_vs_dimension, feature_mismatch, ill_conditioning, real_data
from verification.parallel import TaskPool
from verification.profiles import Profile, get_profile
from verification.records import VERDICTS, ClaimResult, Metric
from verification.registry import EXTRA_CHECKS, claim_module
from verification.scenarios import prepare_evidence_dir

QUICK = get_profile("quick")


def _run(module, tmp_path):
    result = module.check(QUICK, prepare_evidence_dir(tmp_path / module.CLAIM_ID), TaskPool())
    assert result.id == module.CLAIM_ID and result.verdict in VERDICTS
    assert result.table and result.threshold and result.evidence
    assert set(module.TOLERANCES) <= set(result.metrics)
    for evidence in result.evidence:
        assert (tmp_path / evidence).exists(), evidence
    return result, {name: metric.value for name, metric in result.metrics.items()}


def _freeze_features(monkeypatch):
    """Break the flow: dw/dt = 0, so the MLP keeps its random starting features (only a moves)."""
    original = flow_module.ParticleFlow._field

    def frozen_w(self, y):
        dy, *rest = original(self, y)
        dy = dy.clone()
        self.layout.unpack(dy)[1].zero_()
        return (dy, *rest)

    monkeypatch.setattr(flow_module.ParticleFlow, "_field", frozen_w)


def test_every_extra_check_is_registered_under_its_id():
    for claim_id in ("real-data", "collinear-teacher", "feature-mismatch", "escape-vs-dimension", "ill-conditioning"):
        assert claim_id in EXTRA_CHECKS
        module = claim_module(claim_id)
        assert module.CLAIM_ID == claim_id and callable(module.check) and module.STATEMENT


# ----------------------------------------------------------------------------- real-data
def test_real_data_is_standardised_and_usable_as_the_empirical_law(tmp_path):
    x = real_data.load_dataset("diabetes")
    assert x.shape == (442, 10)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(x.std(0), 1, atol=1e-12)
    np.save(tmp_path / "x.npy", x)
    spec = parse_problem(real_data.problem_tables(tmp_path / "x.npy", 10))
    assert spec.law.name == "empirical" and spec.samples is None
    assert spec.law.sample(None, 0).shape == (442, 10)


@pytest.mark.slow
def test_real_data_quick(tmp_path):
    result, m = _run(real_data, tmp_path)
    assert result.verdict == "pass"
    assert m["mlp_unexplained_worst"] <= real_data.REACH_TOL
    assert m["linear_unexplained_min"] > 0.05 and m["random_feature_unexplained"] > 0.05
    assert (tmp_path / "real-data" / "diabetes" / "x.npy").is_file()


# ---------------------------------------------------------------------- feature-mismatch
def test_predicted_floor_follows_eckart_young():
    # orthogonal teacher: Σ_°° = κ0 I, so k features leave (k° − k)/k° of the signal
    for k in range(1, 6):
        assert feature_mismatch.predicted_unexplained(k) == pytest.approx(max(feature_mismatch.K0 - k, 0) / feature_mismatch.K0)


@pytest.mark.slow
def test_feature_mismatch_quick(tmp_path):
    result, m = _run(feature_mismatch, tmp_path)
    assert result.verdict == "pass"
    assert m["worst_floor_gap"] <= feature_mismatch.REACH_TOL
    assert m["floor_min_gap"] >= -1e-8  # nobody beats Eckart–Young
    assert m["gamma_loss_excess"] <= feature_mismatch.GAMMA_LOSS_TOL and m["lstsq_loss_excess"] <= feature_mismatch.GAMMA_LOSS_TOL
    assert m["gamma_lstsq_distance"] <= feature_mismatch.GAMMA_TOL
    assert {row["k"] for row in result.table} == {1, 2, 3, 4}
    assert [row["dim null(A_∞)"] for row in result.table if row["k"] == 4] == [1]  # the non-unique case is exercised


def test_lstsq_gamma_is_the_minimal_norm_minimiser_of_the_quadratic():
    """Σ_µµ random SPD, Σ_µ° of rank 2 < k = 4: Γ_ls = Σ_µµ⁻¹ A A⁺ (closed form), L minimal, Γ_ls ⟂ null(A)."""
    rng = np.random.default_rng(1)
    root = rng.standard_normal((4, 4))
    sigma_mm = root @ root.T + 0.5 * np.eye(4)
    sigma_mt = rng.standard_normal((4, 2)) @ rng.standard_normal((2, 3))
    a = sigma_mt @ sigma_mt.T
    gamma = feature_mismatch.lstsq_gamma(sigma_mm, sigma_mt)
    np.testing.assert_allclose(gamma, np.linalg.solve(sigma_mm, a) @ np.linalg.pinv(a, rcond=1e-10), atol=1e-10)

    def loss(g):  # L(µ, Γ) up to constants, N = ∞
        return -2 * np.trace(sigma_mt.T @ g @ sigma_mt) + np.trace(g.T @ sigma_mm @ g @ a)

    best = -np.trace(sigma_mt.T @ np.linalg.solve(sigma_mm, sigma_mt))  # −tr(Σ_°µ Σ_µµ⁻¹ Σ_µ°)
    assert loss(gamma) == pytest.approx(best, rel=1e-10)
    null = np.linalg.eigh(a)[1][:, :2]
    assert np.linalg.norm(gamma @ null) < 1e-10 * np.linalg.norm(gamma)


# ---------------------------------------------------------------------- ill-conditioning
def test_tangent_limit_matches_a_sampled_projection():
    """The closed-form ε → 0 limit equals least squares of f° on {σ(s x1), s x2 σ'(s x1)} over a large sample."""
    s, tau = ill_conditioning.SCALE, ill_conditioning.NOISE
    x = np.random.default_rng(0).standard_normal((400_000, 3))
    h = np.stack([torch.erf(torch.as_tensor(s * x[:, 0])).numpy(), s * x[:, 1] * 2 / math.sqrt(math.pi) * np.exp(-((s * x[:, 0]) ** 2))], 1)
    f = torch.erf(torch.as_tensor(s * x[:, :2])).numpy()
    coef, *_ = np.linalg.lstsq(h, f, rcond=None)
    sampled = 0.5 * (tau**2 + np.mean(np.sum((f - h @ coef) ** 2, 1)))
    assert sampled == pytest.approx(ill_conditioning.tangent_limit_loss(), rel=2e-2)


def test_merged_particles_are_refused_with_the_threshold_in_the_message():
    landscape = parse_problem(ill_conditioning.PROBLEM).landscape()
    with pytest.raises(SingularMomentError, match="threshold"):
        landscape.evaluate(ill_conditioning.merged_measure(1e-7))
    assert math.isfinite(landscape.evaluate(ill_conditioning.merged_measure(1e-3)).loss)


def test_ill_conditioning_quick(tmp_path):
    result, m = _run(ill_conditioning, tmp_path)
    assert result.verdict == "pass"
    assert m["sigma_min_slope"] == pytest.approx(2.0, abs=0.05)
    assert m["loss_limit_error"] < 1e-5
    assert 1e-7 < m["refusal_epsilon"] < 1e-4
    refused = [row for row in result.table if row["refused"] is True]
    assert refused and all(row["L_∞"] is None for row in refused)


# --------------------------------------------------------------------- collinear-teacher
def test_collinear_teacher_sigma_tt_vanishes_like_angle_squared():
    lam = []
    for angle in (8.0, 4.0, 2.0):
        landscape = parse_problem(collinear_teacher.problem(angle)).landscape()
        lam.append(float(torch.linalg.eigvalsh(landscape.expectation.sigma_tt)[0]))
    assert lam[0] / lam[1] == pytest.approx(4.0, rel=0.05) and lam[1] / lam[2] == pytest.approx(4.0, rel=0.05)


@pytest.mark.slow
def test_collinear_teacher_quick(tmp_path):
    result, m = _run(collinear_teacher, tmp_path)
    assert result.verdict in ("pass", "inconclusive")  # slow convergence at small angles is a finding, not a failure
    assert m["sigma_tt_slope"] == pytest.approx(2.0, abs=0.1)
    assert m["ratio_slope"] < -3.0  # R = ‖K‖/λ_min(Σ_µ°Σ_°µ) blows up like α^-4
    rows = {row["angle (deg)"]: row for row in result.table}
    assert rows[90.0]["unexplained (N=∞)"] < collinear_teacher.REACH_TOL
    assert rows[90.0]["weak-direction residual"] < collinear_teacher.WEAK_TOL
    assert rows[3.0]["λ_min(Σ_°°)"] < 1e-2 * rows[90.0]["λ_min(Σ_°°)"]
    assert set(result.metrics) == set(collinear_teacher.TOLERANCES)  # every metric has a tolerance of its own


def test_collinear_teacher_counts_a_better_flow_as_no_regression_and_a_worse_one_as_one():
    old = {"learned_fraction": 0.5, "reached_fraction": 0.75, "worst_weak_residual": 0.77, "largest_unlearned_angle": 10.0}
    better = {"learned_fraction": 1.0, "reached_fraction": 1.0, "worst_weak_residual": 1e-4, "largest_unlearned_angle": 0.0}
    worse = {"learned_fraction": 0.25, "reached_fraction": 0.5, "worst_weak_residual": 2.0, "largest_unlearned_angle": 30.0}

    def record(values):
        return ClaimResult(collinear_teacher.CLAIM_ID, "", "inconclusive", {k: Metric(v) for k, v in values.items()}, "")

    tolerances = {collinear_teacher.CLAIM_ID: collinear_teacher.TOLERANCES}
    assert not [c for c in compare([record(better)], [record(old)], tolerances) if c.regression]
    regressed = {c.metric for c in compare([record(worse)], [record(old)], tolerances) if c.regression}
    assert regressed == set(worse)


# ------------------------------------------------------------------- escape-vs-dimension
def test_projection_law_matches_the_kicks_the_flow_gets():
    """E[−log c] by the projection formula equals the mean over actual isotropic_kick draws."""
    lam, v3, _ = escape_vs_dimension.unstable_direction(3)
    assert lam < 0
    d, k0 = 8, escape_vs_dimension.K0
    v = escape_vs_dimension._embed(v3, d)
    rng = np.random.default_rng(5)
    direct = [
        -math.log(abs(float(v @ (math.sqrt(0.5) * isotropic_kick(k0, k0 + d, escape_vs_dimension.RADIUS, rng).reshape(-1)))))
        for _ in range(5_000)
    ]
    mean, std = escape_vs_dimension.neg_log_projection(v3, d, 200_000)
    assert np.mean(direct) == pytest.approx(mean, abs=4 * std / math.sqrt(len(direct)))


@pytest.mark.slow
def test_escape_vs_dimension_quick(tmp_path):
    result, m = _run(escape_vs_dimension, tmp_path)
    assert result.verdict == "pass"
    assert m["linearisation_spread"] < escape_vs_dimension.CONSTANT_RTOL
    assert m["poly_rms"] < m["exp_rms"]  # fitted to the measured times
    assert m["poly_exponent_error"] <= escape_vs_dimension.SIGMAS * result.metrics["poly_exponent"].uncertainty + escape_vs_dimension.EXPONENT_SLACK
    assert m["poly_exponent"] == pytest.approx(m["poly_exponent_predicted"], abs=0.01)
    assert m["log_slope_ratio"] == pytest.approx(1.0, abs=0.1)


# ------------------------------------------------------------------------ can-fail tests
# Each breaks one component the check's conclusion depends on and asserts the verdict is "fail"
# and the metric that moved crossed its fail threshold.
def test_real_data_fails_when_the_features_are_frozen(tmp_path, monkeypatch):
    """With dw/dt = 0 the "trained" MLP is the random-feature model: it cannot reach ½τ² on the data."""
    _freeze_features(monkeypatch)
    out = prepare_evidence_dir(tmp_path / real_data.CLAIM_ID)
    result = real_data.check(Profile("quick", seeds=1, scale=1.0), out, TaskPool())
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert result.verdict == "fail", m
    assert m["mlp_unexplained_worst"] > real_data.CANNOT_TOL
    # the frozen MLP with a trained is exactly the random-feature model of its start (same w, optimal a)
    assert m["mlp_unexplained_worst"] == pytest.approx(m["random_feature_unexplained"], rel=1e-3)
    assert m["linear_unexplained_min"] >= real_data.CANNOT_TOL  # the comparator is untouched


@pytest.mark.slow
def test_feature_mismatch_fails_when_gamma_star_is_not_minimal_norm(tmp_path, monkeypatch):
    """Γ* returned with a component on null(Σ_µ°Σ_°µ): still a minimiser of L(µ, ·), but not the minimal-norm one."""
    original = AttentionLandscape.gamma_from_moments

    def not_minimal_norm(self, sigma_mm, sigma_mt, fourth=None):
        gamma = original(self, sigma_mm, sigma_mt, fourth)
        vals, vecs = torch.linalg.eigh(sigma_mt @ sigma_mt.T)
        null = vecs[:, vals <= 1e-10 * vals[-1]]
        return gamma + torch.linalg.norm(gamma) * torch.ones(gamma.shape[0], null.shape[1], dtype=gamma.dtype) @ null.T

    monkeypatch.setattr(AttentionLandscape, "gamma_from_moments", not_minimal_norm)
    result = feature_mismatch.check(QUICK, prepare_evidence_dir(tmp_path / feature_mismatch.CLAIM_ID), TaskPool())
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert result.verdict == "fail", m
    assert m["gamma_lstsq_distance"] > feature_mismatch.GAMMA_FAIL  # off the least-squares reference
    assert m["gamma_loss_excess"] <= feature_mismatch.GAMMA_LOSS_TOL  # still a minimiser: only minimal norm is broken
    assert m["worst_floor_gap"] <= feature_mismatch.REACH_TOL  # training is untouched


@pytest.mark.slow
def test_feature_mismatch_fails_when_gamma_star_is_not_a_minimiser(tmp_path, monkeypatch):
    """Γ* returned as Σ_µµ⁻¹ Σ_µ°Σ_°µ without the A_N⁺ factor (a one-line slip): L(µ, Γ*) leaves L_∞."""

    def no_pinv(self, sigma_mm, sigma_mt, fourth=None):
        return torch.linalg.solve(sigma_mm, sigma_mt @ sigma_mt.T)

    monkeypatch.setattr(AttentionLandscape, "gamma_from_moments", no_pinv)
    result = feature_mismatch.check(QUICK, prepare_evidence_dir(tmp_path / feature_mismatch.CLAIM_ID), TaskPool())
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert result.verdict == "fail", m
    assert m["gamma_loss_excess"] > feature_mismatch.GAMMA_LOSS_FAIL and m["gamma_lstsq_distance"] > feature_mismatch.GAMMA_FAIL
    assert m["lstsq_loss_excess"] <= feature_mismatch.GAMMA_LOSS_TOL  # the reference does not use Γ*


def test_ill_conditioning_fails_when_sigma_gets_a_silent_jitter(tmp_path, monkeypatch):
    """Σ_µµ computed with a jitter 1e-4·I: λ_min no longer vanishes like ε², nothing is ever refused."""
    original = ExactGaussianExpectation.moments

    def jittered(self, a, w, p, fourth=False):
        mom = original(self, a, w, p, fourth)
        return mom._replace(sigma_mm=mom.sigma_mm + 1e-4 * torch.eye(mom.sigma_mm.shape[0], dtype=mom.sigma_mm.dtype))

    monkeypatch.setattr(ExactGaussianExpectation, "moments", jittered)
    result, m = _run(ill_conditioning, tmp_path)
    assert result.verdict == "fail", m
    assert abs(m["sigma_min_slope"] - 2.0) > 0.5  # the fail threshold on the λ_min exponent
    assert math.isnan(m["refusal_epsilon"])  # the jitter hides the singularity: nothing refused


def test_collinear_teacher_fails_when_the_features_are_frozen(tmp_path, monkeypatch):
    """Inconclusive by design at small angles, but a run at α ≥ 30° must reach the floor: frozen features do not."""
    _freeze_features(monkeypatch)
    result, m = _run(collinear_teacher, tmp_path)
    assert result.verdict == "fail", m
    rows = {row["angle (deg)"]: row for row in result.table}
    assert rows[90.0]["unexplained (N=∞)"] > collinear_teacher.FAIL_TOL
    assert m["worst_unexplained"] > collinear_teacher.FAIL_TOL
    assert m["sigma_tt_slope"] == pytest.approx(2.0, abs=0.1)  # the teacher side is untouched


@pytest.mark.slow
def test_escape_vs_dimension_fails_when_escape_slows_exponentially_in_d(tmp_path, monkeypatch):
    """A flow whose speed decays like e^{-(d−3)/30}: escape times grow exponentially in d, off the linearisation."""
    original = flow_module.ParticleFlow._field

    def slowed(self, y):
        dy, *rest = original(self, y)
        return (dy * math.exp(-(self.layout.d - 3) / 30), *rest)

    monkeypatch.setattr(flow_module.ParticleFlow, "_field", slowed)
    result, m = _run(escape_vs_dimension, tmp_path)
    assert result.verdict == "fail", m
    assert m["linearisation_spread"] > 4 * escape_vs_dimension.CONSTANT_RTOL
    rows = {row["d"]: row["mean escape time"] for row in result.table if row["runs"]}
    assert rows[3] < rows[8] < rows[24]


@pytest.mark.slow
def test_escape_vs_dimension_fails_when_the_measured_exponent_is_off(tmp_path, monkeypatch):
    """A flow slowed by e^{-(d−3)/300}: escape at d = 24 takes 7% longer — within the kicks' spread and the per-run
    linearisation test, but the exponent fitted to the measured times leaves the prediction's."""
    original = flow_module.ParticleFlow._field

    def slowed(self, y):
        dy, *rest = original(self, y)
        return (dy * math.exp(-(self.layout.d - 3) / 300), *rest)

    monkeypatch.setattr(flow_module.ParticleFlow, "_field", slowed)
    result, m = _run(escape_vs_dimension, tmp_path)
    assert result.verdict == "fail", m
    margin = escape_vs_dimension.SIGMAS * result.metrics["poly_exponent"].uncertainty + escape_vs_dimension.EXPONENT_SLACK
    assert m["poly_exponent_error"] > 2 * margin and m["poly_exponent"] > m["poly_exponent_predicted"]
    assert m["linearisation_spread"] <= 4 * escape_vs_dimension.CONSTANT_RTOL  # the old spread test alone would not fail it
