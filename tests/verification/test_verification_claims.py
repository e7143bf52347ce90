"""The claims checked by the lead's modules, in the quick profile, and demonstrations that each can fail.

saddle-avoidance, rates and benign-landscape; the Dask path of a real claim equals the serial one.
"""

from __future__ import annotations

import importlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from landscape.cases import dead_neuron_saddle
from landscape.dynamics import flow as flow_module
from landscape.model.expectations import ExactGaussianExpectation
from landscape.model.measure import ParticleMeasure
from landscape.second_order.classify import analyze
from landscape.second_order.flat_variation import curvature_test
from landscape.second_order.nullspace import NullSpace
from landscape.second_order.settings import AnalysisSettings
from verification.claims import benign_landscape, rates, saddle_avoidance
from verification.parallel import TaskPool
from verification.profiles import Profile, get_profile
from verification.scenarios import landscape_of, prepare_evidence_dir

pytestmark = pytest.mark.slow
ONE_SEED = Profile("quick", seeds=1, scale=1.0)


def _run(module, tmp_path, profile=None, pool=None):
    return module.check(profile or get_profile("quick"), prepare_evidence_dir(tmp_path / module.CLAIM_ID), pool or TaskPool())


def test_saddle_avoidance_quick_passes_and_dask_reproduces_it(tmp_path):
    distributed = pytest.importorskip("distributed")
    serial = _run(saddle_avoidance, tmp_path / "serial")
    assert serial.verdict == "pass"
    assert serial.metrics["reached_fraction"].value == 1.0
    assert serial.metrics["saddle_displacement"].value <= saddle_avoidance.STAY_TOL
    assert serial.metrics["kicked_gap"].value < saddle_avoidance.GAP_TOL
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        remote = _run(saddle_avoidance, tmp_path / "dask", pool=TaskPool(scheduler=cluster.scheduler_address))
    assert remote.verdict == serial.verdict
    for name, metric in serial.metrics.items():
        assert remote.metrics[name].value == pytest.approx(metric.value, rel=1e-12, abs=1e-15), name


def test_saddle_avoidance_fails_when_the_kick_is_broken(tmp_path, monkeypatch):
    training = importlib.import_module("landscape.dynamics.simulate")  # the engine module that calls isotropic_kick
    monkeypatch.setattr(training, "isotropic_kick", lambda m, dim, radius, rng: np.zeros((m, dim)))
    result = _run(saddle_avoidance, tmp_path, ONE_SEED)
    assert result.verdict == "fail"


def test_rates_quick_matches_the_hessian_predictions(tmp_path):
    result = _run(rates, tmp_path)
    assert result.verdict == "pass"
    assert abs(result.metrics["decay_rate_ratio"].value - 1) < rates.RATE_RTOL
    assert abs(result.metrics["escape_slope_ratio"].value - 1) < rates.RATE_RTOL
    assert result.metrics["loss_sampled_z"].value <= rates.LOSS_Z and result.metrics["hessian_fd_error"].value <= rates.HESSIAN_RTOL
    assert (tmp_path / "rates" / "escape.json").is_file() and (tmp_path / "rates" / "decay.json").is_file()


def test_rates_fail_when_loss_and_hessian_scale_together(tmp_path, monkeypatch):
    """Every kernel moment doubled (a wrong kernel constant): L, the flow's speed and the Hessian all double, so both
    ratios still read 1 — the sampled loss does not double, and the claim fails on it."""
    original_init, original_moments = ExactGaussianExpectation.__init__, ExactGaussianExpectation.moments

    def doubled_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.sigma_tt = 2.0 * self.sigma_tt

    def doubled(self, a, w, p, fourth=False):
        mom = original_moments(self, a, w, p, fourth)
        return mom._replace(sigma_mm=2.0 * mom.sigma_mm, sigma_mt=2.0 * mom.sigma_mt)

    monkeypatch.setattr(ExactGaussianExpectation, "__init__", doubled_init)
    monkeypatch.setattr(ExactGaussianExpectation, "moments", doubled)
    # the flows take the reference engine, whose moments are the patched ones (the fast engine has its own)
    monkeypatch.setattr(flow_module, "unsupported", lambda landscape: "reference engine for this test")
    result = _run(rates, tmp_path, ONE_SEED)
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert result.verdict == "fail", m
    assert m["loss_sampled_z"] > rates.LOSS_Z_FAIL
    assert abs(m["decay_rate_ratio"] - 1) <= rates.RATE_RTOL and abs(m["escape_slope_ratio"] - 1) <= rates.RATE_RTOL  # cancelled


def test_fd_spectrum_catches_a_wrong_weight_scaling_of_the_dense_hessian(monkeypatch):
    """The dense Wasserstein Hessian with P^{-1} on one side only (a one-line slip): off the finite-difference spectrum."""
    from landscape.second_order import references

    landscape = landscape_of(rates.PROBLEM)
    measure = ParticleMeasure(rates.PROBE.a, rates.PROBE.w, np.array([0.3, 0.7]))
    honest = references.dense_spectrum(landscape, measure)[0]
    assert np.max(np.abs(honest - rates.fd_wasserstein_spectrum(landscape, measure))) <= rates.HESSIAN_RTOL * np.max(np.abs(honest))
    s = np.repeat(measure.p**-1.0, measure.features + measure.dim)
    monkeypatch.setattr(references, "dense_wasserstein_hessian", lambda land, mu: references.dense_hessian(land, mu) * torch.as_tensor(s)[:, None])
    broken = references.dense_spectrum(landscape, measure)[0]
    assert np.max(np.abs(broken - rates.fd_wasserstein_spectrum(landscape, measure))) > rates.HESSIAN_FAIL * np.max(np.abs(broken))


def test_rates_fail_with_a_wrong_hessian(tmp_path, monkeypatch):
    true_spectrum = rates.dense_spectrum
    monkeypatch.setattr(rates, "dense_spectrum", lambda landscape, measure: (2.0 * true_spectrum(landscape, measure)[0], None))
    assert _run(rates, tmp_path, ONE_SEED).verdict == "fail"


def test_benign_landscape_quick_finds_minima_and_certified_saddles(tmp_path):
    result = _run(benign_landscape, tmp_path)
    assert result.verdict == "pass"
    assert result.metrics["degenerate_count"].value == 0
    assert result.metrics["strict_saddle_count"].value >= 4 and result.metrics["global_minimum_count"].value >= 1
    assert result.metrics["minimum_lambda_min"].value > benign_landscape.LAMBDA_TOL
    assert result.metrics["curvature_recompute_error"].value <= benign_landscape.CURVATURE_RTOL
    assert result.metrics["stationarity_error"].value <= benign_landscape.STATIONARITY_RTOL
    for row in result.table:  # only judged rows carry a bare verdict; the rest say what they are
        judged = row["classification"] in ("global_minimum", "strict_saddle")
        assert judged or "not judged" in row["classification"], row
        assert not (judged and row["w_max"] > benign_landscape.W_MAX), row
        if "degenerate" in row["classification"]:
            assert row["classification"].startswith("at infinity"), row


def test_the_curvature_test_and_stationarity_match_their_recomputations_and_flag_a_wrong_r1():
    landscape = benign_landscape.landscape_of(benign_landscape.PROBLEM)
    saddle = dead_neuron_saddle(benign_landscape.K0, benign_landscape.D, benign_landscape.SCALE, dead=1)
    test = curvature_test(landscape, saddle)
    assert benign_landscape.curvature_recomputed(landscape, saddle, test)["error"] <= benign_landscape.CURVATURE_RTOL
    mu_only = replace(test, r1=float(np.linalg.norm(saddle.a, axis=1).max()))  # R₁ from µ alone
    assert benign_landscape.curvature_recomputed(landscape, saddle, mu_only)["error"] > 0.5
    rng = np.random.default_rng(2)
    measure = ParticleMeasure(rng.standard_normal((3, 3)), rng.standard_normal((3, 5)) / 2, rng.dirichlet(np.ones(3)))
    a, w, p = measure.tensors()
    assert benign_landscape.stationarity_recomputed(landscape, measure) == pytest.approx(float(landscape.stationarity(a, w, p)), rel=1e-10)


def test_benign_landscape_fails_when_the_null_space_is_not_deflated(tmp_path, monkeypatch):
    classify = importlib.import_module("landscape.second_order.classify")

    def nothing_deflated(operator, tol, rank_rtol=1e-10):
        empty = torch.zeros((operator.size, 0), dtype=operator.dtype)
        return NullSpace(empty, 0, 0, 0.0, {}, np.zeros(0))

    monkeypatch.setattr(classify, "null_space", nothing_deflated)
    result = _run(benign_landscape, tmp_path, ONE_SEED)
    assert result.verdict == "fail"
    assert result.metrics["minimum_lambda_min"].value <= benign_landscape.LAMBDA_TOL


def test_benign_landscape_fails_when_the_pushed_teacher_is_wrong(tmp_path, monkeypatch):
    curvature = importlib.import_module("landscape.second_order.flat_variation")
    true_push = curvature.pushed_teacher

    def unscaled(landscape, r):  # ν_R without the factor L on its a's
        nu = true_push(landscape, r)
        return ParticleMeasure(nu.a / landscape.teacher.neurons, nu.w)

    monkeypatch.setattr(curvature, "pushed_teacher", unscaled)
    result = _run(benign_landscape, tmp_path, ONE_SEED)
    assert result.verdict == "fail"
    assert result.metrics["curvature_recompute_error"].value > benign_landscape.CURVATURE_RTOL


def test_benign_landscape_fails_when_saddles_go_undetected(tmp_path, monkeypatch):
    blind = AnalysisSettings.defaults()
    blind = type(blind)(**{**blind.to_dict(), "lambda_tol": 10.0})  # no curvature counts as negative
    monkeypatch.setattr(benign_landscape, "analyze", lambda landscape, measure, refine_first: analyze(landscape, measure, blind, refine_first))
    assert _run(benign_landscape, tmp_path, ONE_SEED).verdict == "fail"
