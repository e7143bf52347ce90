"""Claim ``birth-death`` (docs/theory.md §10.7): the quick profile, the invariant missing direction, the scout
plateau's time-to-ε, and the starts that fail (a missing direction, a harmful weight flow, birth–death switched off)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from landscape.dynamics import flow as flow_module
from landscape.model.measure import ParticleMeasure
from verification.claims import birth_death
from verification.parallel import TaskPool
from verification.profiles import get_profile
from verification.scenarios import landscape_of, prepare_evidence_dir


def test_missing_direction_start_is_orthogonal_to_the_teacher_direction(tmp_path):
    path = birth_death.direction_start(tmp_path / "start.npz", seed=3, eps=0.0)
    measure = ParticleMeasure.load(path)
    assert measure.size == birth_death.PARTICLES and np.all(measure.w[:, 1] == 0.0)
    # the e_2 feature is invisible to the student: Σ_µ° e_2 = 0 exactly (odd σ, orthogonal directions)
    landscape = landscape_of(birth_death.PROBLEM)
    sigma_mt = landscape.moments(*measure.tensors(landscape.dtype, landscape.device))[1].cpu().numpy()
    assert np.all(sigma_mt[:, 1] == 0.0) and np.all(np.abs(sigma_mt[:, 0]) > 0)


def test_time_to_epsilon_interpolates_an_exponential_exactly():
    """``gap = exp(−t)`` on a coarse grid: log-linear interpolation gives ``t_ε = log(1/ε)``; never reached → inf."""
    time = np.linspace(0.0, 10.0, 7)
    gap = np.exp(-time)
    for eps in (0.5, 1e-2, 1e-4):
        assert birth_death.time_to_epsilon(time, gap, eps) == pytest.approx(np.log(1 / eps), rel=1e-12)
    assert birth_death.time_to_epsilon(time, gap, 1.0) == 0.0
    assert birth_death.time_to_epsilon(time, gap, 1e-6) == np.inf


@pytest.mark.slow
def test_birth_death_quick_profile_passes_on_the_scout_plateau(tmp_path):
    """The poor starts do not stall the plain flow; the scout start does (≈ 0.97 of L(0) at t = 1), and WFR reaches
    ε two orders of magnitude sooner, with t_ε ∝ 1/α (docs/theory.md §10.7): pass."""
    out = prepare_evidence_dir(tmp_path / birth_death.CLAIM_ID)
    result = birth_death.check(get_profile("quick"), out, TaskPool())
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert result.verdict == "pass", m
    assert next(iter(result.metrics)) == "scout_speedup"  # the key metric
    assert m["scout_plateau"] > 0.9 and m["scout_speedup"] > 10 * birth_death.FACTOR
    assert m["scout_plain_time"] == pytest.approx(m["scout_speedup"] * m["scout_wfr_time"], rel=1e-12)
    assert 5.0 < m["scout_rate_scaling"] < 12.0  # → 10 as α grows
    scout = json.loads((out / "scout.json").read_text())
    assert [r["rate"] for r in scout] == [0.0, birth_death.SCOUT_RATE, birth_death.SCOUT_RATE / 10]
    assert all(r["status"] == "completed" and r["final_gap"] < birth_death.EPSILON for r in scout)
    assert m["stalled_starts"] == 0 and m["worst_plain_gap"] < 1e-2 and m["worst_birth_death_gap"] < 1e-2
    # with w ⟂ u_2 exactly every flow stays in the invariant subspace: birth–death does not help
    assert m["missing_direction_gap"] > 0.25 and m["missing_direction_improvement"] == pytest.approx(1.0, abs=0.05)
    assert m["worst_harm"] <= 1.0  # birth–death leaves every judged start within noise of the plain flow
    runs = json.loads((out / "runs.json").read_text())
    assert len(runs) == 9 and all(r["status"] == "completed" for r in runs)
    assert any(r["events"] > 0 for r in runs if r["variant"] == "stochastic")
    for path in result.evidence:
        assert (tmp_path / path).exists(), path


@pytest.mark.slow
def test_birth_death_fails_when_a_judged_start_lacks_a_direction(tmp_path, monkeypatch):
    """Feeding the exactly-missing direction as the judged start: the plain flow stalls and birth–death does not rescue it."""
    monkeypatch.setattr(birth_death, "NEAR_MISSING_EPS", 0.0)
    out = prepare_evidence_dir(tmp_path / birth_death.CLAIM_ID)
    result = birth_death.check(get_profile("quick"), out, TaskPool())
    assert result.verdict == "fail", {k: v.value for k, v in result.metrics.items()}
    assert result.metrics["stalled_starts"].value == 1 and result.metrics["rescued_starts"].value == 0


def _quick_with_weight_field(tmp_path, monkeypatch, edit):
    """The quick check with ``edit`` (in place) applied to the weight part ``dp/dt`` of every field evaluation."""
    original = flow_module.ParticleFlow._field

    def edited(self, y):
        dy, *rest = original(self, y)
        dy = dy.clone()
        edit(self.layout.unpack(dy)[2])
        return (dy, *rest)

    monkeypatch.setattr(flow_module.ParticleFlow, "_field", edited)
    out = prepare_evidence_dir(tmp_path / birth_death.CLAIM_ID)
    return birth_death.check(get_profile("quick"), out, TaskPool()), out


@pytest.mark.slow
def test_birth_death_fails_when_it_makes_the_loss_worse(tmp_path, monkeypatch):
    """The Fisher–Rao weight flow with its sign flipped (mass moves to the worst particles): no start stalls the plain
    flow, but WFR now ends far above the plain flow's gap — a harm, so fail rather than inconclusive."""
    result, out = _quick_with_weight_field(tmp_path, monkeypatch, torch.Tensor.neg_)
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert result.verdict == "fail", m
    assert m["stalled_starts"] == 0 and m["worst_harm"] > 1.0
    rows = json.loads((out / "gaps.json").read_text())
    judged = [r for r in rows if r["judged"]]
    limit = [birth_death.WORSE_FACTOR * r["plain gap"] + birth_death.NOISE_FRACTION * r["L(0)"] for r in judged]
    assert any(r["wfr gap"] > bound for r, bound in zip(judged, limit, strict=True))


@pytest.mark.slow
def test_birth_death_fails_when_switched_off(tmp_path, monkeypatch):
    """α = 0: the Fisher–Rao weight velocity zeroed in the flow, so "WFR" is the plain flow. The scout start still
    stalls and WFR reaches ε no sooner (speed-up 1): fail, not inconclusive."""
    result, _ = _quick_with_weight_field(tmp_path, monkeypatch, torch.Tensor.zero_)
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert result.verdict == "fail", m
    assert m["scout_plateau"] > birth_death.PLATEAU_FRACTION
    assert m["scout_speedup"] == pytest.approx(1.0, rel=1e-6) and m["scout_rate_scaling"] == pytest.approx(1.0, rel=1e-6)


@pytest.mark.slow
def test_birth_death_is_inconclusive_when_the_scout_start_does_not_stall(tmp_path, monkeypatch):
    """Looking for the stall at t = 12, after the plain flow has left the plateau: the premise is unmet, inconclusive."""
    monkeypatch.setattr(birth_death, "STALL_TIME", 12.0)
    out = prepare_evidence_dir(tmp_path / birth_death.CLAIM_ID)
    result = birth_death.check(get_profile("quick"), out, TaskPool())
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert result.verdict == "inconclusive", m
    assert m["scout_plateau"] < birth_death.PLATEAU_FRACTION and m["scout_speedup"] > birth_death.FACTOR
