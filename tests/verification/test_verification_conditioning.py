"""Claim ``conditioning`` (docs/theory.md §10.5): the quick profile, the phase rule, and a broken flow that fails."""

from __future__ import annotations

import dataclasses
import json
import tomllib

import numpy as np
import pytest

from landscape.dynamics import Trajectory, read_trajectory
from landscape.dynamics import ensemble as ensemble_module
from landscape.dynamics.train import read_run_config
from reports import phases as report_phases
from verification import analysis as phases
from verification.claims import conditioning
from verification.parallel import TaskPool
from verification.profiles import Profile, get_profile
from verification.scenarios import ensemble_training, prepare_evidence_dir, run_training


def _staircase() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A drop of 1.5 decades by t = 5, flat until t = 20, a drop of 2 decades by t = 30; λ_min doubles during the last drop."""
    time = np.linspace(0.0, 30.0, 301)
    level = np.where(time < 5, -0.3 * time, np.where(time < 20, -1.5 - 1e-4 * (time - 5), -1.5015 - 0.2 * (time - 20)))
    loss = 10.0**level
    sigma = np.where(time < 20, 1.0, 1.0 + (time - 20) / 10)
    return time, loss, np.abs(np.gradient(loss, time)), sigma


def test_one_phase_rule_for_the_claim_and_the_run_report():
    """The claim's phases (verification.analysis on arrays) are the report's (reports.phases on a trajectory.csv)."""
    time, loss, grad, sigma = _staircase()
    plateaus = phases.find_plateaus(time, loss, grad)
    found = [(p.t_start, p.t_stop) for p in plateaus if not p.final]
    assert len(found) == 1 and found[0] == pytest.approx((5.0, 20.0), abs=0.6)
    claim = phases.find_phases(time, sigma, plateaus)
    traj = Trajectory({"time": time, "loss": loss, "grad_norm": grad, "sigma_min": sigma}, [""] * time.size)
    assert report_phases.find_plateaus(traj) == plateaus
    assert report_phases.find_phases(traj, plateaus) == claim
    # the plateau keeps λ_min fixed; the last drop doubles it: > 25% in that phase only
    assert [p.variation > phases.PAPER_VARIATION for p in claim] == [False, False, True]
    kicked = phases.find_phases(time, sigma, plateaus, kicks=[250])  # a kick cuts a phase
    assert len(kicked) == len(claim) + 1
    with pytest.raises(ValueError, match="one length"):
        phases.find_plateaus(time, loss[:-1], grad)
    with pytest.raises(ValueError, match="one length"):
        phases.find_phases(time, sigma[:-1], plateaus)


@pytest.mark.slow
def test_conditioning_quick_profile_passes(tmp_path):
    out = prepare_evidence_dir(tmp_path / conditioning.CLAIM_ID)
    result = conditioning.check(get_profile("quick"), out, TaskPool())
    assert result.id == "conditioning"
    assert result.verdict == "pass", result.metrics
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert conditioning.FLOOR_FRACTION <= m["worst_min_ratio"] <= m["min_ratio"] <= 1.0
    assert 1e-7 < m["min_inverse_condition"] <= 1.0
    assert 0.0 <= m["paper_phase_fraction"] <= 1.0 and 0.0 <= m["max_phase_variation"] < 1.0
    assert m["final_gap_fraction"] <= conditioning.TRAINED_FRACTION
    runs = json.loads((out / "runs.json").read_text())
    assert len(runs) == 2 and all(r["status"] == "completed" for r in runs)
    for path in result.evidence:
        assert (tmp_path / path).exists(), path
    assert result.table and {"seed", "phase", "variation"} <= set(result.table[0])
    # the table counts the phases the run report draws (one rule), and the threshold text says how many meet 25%
    drawn = []
    for seed in range(2):
        traj = read_trajectory(out / f"seed_{seed}" / "run" / "trajectory.csv")
        drawn += report_phases.find_phases(traj, report_phases.find_plateaus(traj))
    assert len(result.table) == len(drawn) == m["phases"]
    within = sum(p.variation <= phases.PAPER_VARIATION for p in drawn)
    assert m["paper_phase_fraction"] == pytest.approx(within / len(drawn))
    assert f"holds in {within} of {len(drawn)} phases" in result.threshold


def test_conditioning_fails_when_the_flow_collapses_the_particles(tmp_path, monkeypatch):
    """A broken velocity field that pulls every particle to the particles' mean makes Σ_µµ singular: fail.

    The claim's flows run as one ensemble on the closed-form batched field, so the break goes there."""
    original = ensemble_module.ClosedFormBatch.__call__

    def collapse(self, y, members):
        value = original(self, y, members)
        broken = value.dy.clone()
        for b in np.flatnonzero(members):
            a, w, _, _, _ = self.layout.unpack(y[b])
            da, dw, _, _, _ = self.layout.unpack(broken[b])
            da.copy_(-(a - a.mean(0)))
            dw.copy_(-(w - w.mean(0)))
        return dataclasses.replace(value, dy=broken)

    monkeypatch.setattr(ensemble_module.ClosedFormBatch, "__call__", collapse)
    out = prepare_evidence_dir(tmp_path / conditioning.CLAIM_ID)
    result = conditioning.check(Profile("quick", seeds=1, scale=1.0), out, TaskPool())
    assert result.verdict == "fail", {k: v.value for k, v in result.metrics.items()}
    assert result.metrics["worst_min_ratio"].value < conditioning.FAIL_FRACTION
    assert json.loads((out / "runs.json").read_text())[0]["status"] == "singular"
    assert json.loads((out / "seed_0" / "run" / "status.json").read_text())["status"] == "singular"


def test_ensemble_members_are_their_own_training_runs(tmp_path):
    """The claim's ensemble (verification.scenarios.ensemble_training) writes, per seed, the problem file and run
    files that ``landscape train`` would, and each member equals its own ``landscape train`` run to rounding."""
    seeds = range(2)
    runs = conditioning._flows(tmp_path / "ensemble", seeds, 2.0)
    for seed, run in zip(seeds, runs, strict=True):
        member = tmp_path / "ensemble" / f"seed_{seed}"
        single = run_training(tmp_path / f"single_{seed}", *_member_tables(member))
        assert run.result.status == single.result.status == "completed"
        assert run.result.steps == single.result.steps
        written = read_trajectory(run.directory)
        assert written["step"].tolist() == single.trajectory["step"].tolist()
        for name in single.trajectory:
            # rounding, amplified in the step sizes by the controller's norm^(-1/5) of a cancelling error estimate
            rel = 1e-6 if name == "step_size" else 1e-9
            assert written[name] == pytest.approx(single.trajectory[name], rel=rel, abs=1e-12), name
            assert written[name].tolist() == run.trajectory[name].tolist(), name  # the file holds the floats exactly
        for name in ("a", "w", "p"):
            assert getattr(run.final, name) == pytest.approx(getattr(single.final, name), rel=1e-9, abs=1e-12)
        spec, dyn = read_run_config(run.directory)
        assert spec.tables["init"]["seed"] == seed and dyn.integrator == conditioning.FLOW["integrator"]
    with pytest.raises(ValueError, match="2 directories for 1"):
        ensemble_training([tmp_path / "x", tmp_path / "y"], conditioning.PROBLEM, [{"kind": "gaussian"}], {})


def _member_tables(member) -> tuple[dict, dict, dict]:
    """``(problem, init, dynamics)`` of an ensemble member's ``problem.toml``."""
    tables = tomllib.loads((member / "problem.toml").read_text())
    init, dynamics = tables.pop("init"), tables.pop("dynamics")
    return tables, init, dynamics
