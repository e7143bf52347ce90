"""Claim ``two-timescale`` (docs/theory.md §10.6): the quick profile, the exponent fit, and a frozen Γ that fails."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from landscape.dynamics import flow as flow_module
from verification.analysis import fit_power
from verification.claims import two_timescale
from verification.parallel import TaskPool
from verification.profiles import get_profile
from verification.scenarios import landscape_of, prepare_evidence_dir


def test_fit_power_recovers_the_two_timescale_exponent_and_refuses_non_positive_gaps():
    """The exponent q of gap ∝ η^(−q) is minus fit_power's slope (verification.analysis, shared with every claim)."""
    etas = np.array([3.0, 10.0, 30.0, 100.0])
    assert -fit_power(etas, 0.7 * etas**-1.0)[0] == pytest.approx(1.0, abs=1e-12)
    assert -fit_power(etas, 2.0 * etas**-0.5)[0] == pytest.approx(0.5, abs=1e-12)
    assert all(math.isnan(v) for v in fit_power(etas, [1.0, 0.5, 0.0, 0.1]))
    assert all(math.isnan(v) for v in fit_power(etas[:1], [1.0]))


def test_whitened_start_has_identity_second_moment(tmp_path):
    start = two_timescale.whitened_start(tmp_path)
    landscape = landscape_of(two_timescale.PROBLEM)
    from landscape.model.measure import ParticleMeasure

    sigma = landscape.moments(*ParticleMeasure.load(start).tensors(landscape.dtype, landscape.device))[0]
    np.testing.assert_allclose(sigma.cpu().numpy(), np.eye(2), atol=1e-10)


@pytest.mark.slow
def test_two_timescale_quick_profile_passes(tmp_path):
    out = prepare_evidence_dir(tmp_path / two_timescale.CLAIM_ID)
    result = two_timescale.check(get_profile("quick"), out, TaskPool())
    assert result.verdict == "pass", {k: v.value for k, v in result.metrics.items()}
    m = {name: metric.value for name, metric in result.metrics.items()}
    lo, hi = two_timescale.EXPONENT_RANGE
    assert lo <= m["last_local_exponent"] <= hi and 0.5 < m["exponent"] < 1.5 and 0.5 < m["distance_exponent"] < 1.5
    assert m["largest_eta_gap"] < m["smallest_eta_gap"]
    # the integrator's error is far below the gaps it measures
    assert m["reference_energy_defect"] < 1e-3 * m["largest_eta_gap"]
    gaps = json.loads((out / "gaps.json").read_text())
    assert [row["eta"] for row in gaps] == [30.0, 100.0, 300.0]
    for path in result.evidence:
        assert (tmp_path / path).exists(), path


@pytest.mark.slow
def test_two_timescale_fails_when_gamma_is_frozen(tmp_path, monkeypatch):
    """A broken joint flow whose Γ never moves (dΓ/dt = 0) does not approach the landscape flow: fail."""
    original = flow_module.ParticleFlow._field

    def frozen_gamma(self, y):
        dy, *rest = original(self, y)
        if self.layout.gamma:
            dy = dy.clone()
            self.layout.unpack(dy)[3].zero_()
        return (dy, *rest)

    monkeypatch.setattr(flow_module.ParticleFlow, "_field", frozen_gamma)
    out = prepare_evidence_dir(tmp_path / two_timescale.CLAIM_ID)
    result = two_timescale.check(get_profile("quick"), out, TaskPool())
    assert result.verdict == "fail", {k: v.value for k, v in result.metrics.items()}
    gaps = [row["sup_loss_gap"] for row in json.loads((out / "gaps.json").read_text())]
    assert gaps[0] == pytest.approx(gaps[-1], rel=1e-6) and gaps[0] > 1e-3
