"""The claims checked by the lead's modules, in the quick profile, and demonstrations that each can fail.

saddle-avoidance, rates and benign-landscape; the Dask path of a real claim equals the serial one.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from landscape.classify import analyze
from landscape.tolerances import AnalysisSettings
from verification import benign_landscape, rates, saddle_avoidance
from verification.parallel import TaskPool
from verification.profiles import Profile, get_profile
from verification.scenarios import prepare_evidence_dir

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
    training = importlib.import_module("landscape.dynamics.train")  # the package re-exports a function of that name
    monkeypatch.setattr(training, "isotropic_kick", lambda m, dim, radius, rng: np.zeros((m, dim)))
    result = _run(saddle_avoidance, tmp_path, ONE_SEED)
    assert result.verdict == "fail"


def test_rates_quick_matches_the_hessian_predictions(tmp_path):
    result = _run(rates, tmp_path)
    assert result.verdict == "pass"
    assert abs(result.metrics["decay_rate_ratio"].value - 1) < rates.RATE_RTOL
    assert abs(result.metrics["escape_slope_ratio"].value - 1) < rates.RATE_RTOL
    assert (tmp_path / "rates" / "escape.json").is_file() and (tmp_path / "rates" / "decay.json").is_file()


def test_rates_fail_with_a_wrong_hessian(tmp_path, monkeypatch):
    true_spectrum = rates.dense_spectrum
    monkeypatch.setattr(rates, "dense_spectrum", lambda landscape, measure: (2.0 * true_spectrum(landscape, measure)[0], None))
    assert _run(rates, tmp_path, ONE_SEED).verdict == "fail"


def test_benign_landscape_quick_finds_minima_and_certified_saddles(tmp_path):
    result = _run(benign_landscape, tmp_path)
    assert result.verdict == "pass"
    assert result.metrics["degenerate_count"].value == 0
    assert result.metrics["strict_saddle_count"].value >= 4 and result.metrics["global_minimum_count"].value >= 1


def test_benign_landscape_fails_when_saddles_go_undetected(tmp_path, monkeypatch):
    blind = AnalysisSettings.defaults()
    blind = type(blind)(**{**blind.to_dict(), "lambda_tol": 10.0})  # no curvature counts as negative
    monkeypatch.setattr(benign_landscape, "analyze", lambda landscape, measure, refine_first: analyze(landscape, measure, blind, refine_first))
    assert _run(benign_landscape, tmp_path, ONE_SEED).verdict == "fail"
