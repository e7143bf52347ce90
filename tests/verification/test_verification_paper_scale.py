"""Claim ``paper-scale``: the paper's scenario in the full profile, the quick profile's staircase table, and the verdicts."""

from __future__ import annotations

import json

import numba
import numpy as np
import pytest

from landscape.dynamics import read_trajectory
from reports import phases as report_phases
from verification.analysis import PAPER_VARIATION
from verification.claims import paper_scale
from verification.parallel import TaskPool
from verification.profiles import get_profile
from verification.registry import EXTRA_CHECKS
from verification.scenarios import prepare_evidence_dir


def _check(tmp_path):
    out = prepare_evidence_dir(tmp_path / paper_scale.CLAIM_ID)
    return paper_scale.check(get_profile("quick"), out, TaskPool()), out


def test_full_profile_runs_the_shipped_paper_scenario():
    """The full profile is paper.toml as shipped: d = 20, k = 5, M = 500 sigmoid, Mehler order 32, N = ∞, rosenbrock23 to t = 12."""
    assert EXTRA_CHECKS[paper_scale.CLAIM_ID] == paper_scale.__name__
    full = paper_scale.scenario(get_profile("full"))
    problem, init, dynamics = full["problem"], full["init"], full["dynamics"]
    assert problem["input"]["dim"] == 20 and problem["model"]["features"] == 5 and init["particles"] == 500
    assert problem["model"]["activation"] == problem["teacher"]["activation"] == "sigmoid"
    assert problem["expectation"] == {"method": "exact", "hermite_order": 32} and problem["task"]["prompt_length"] == "inf"
    assert dynamics["integrator"] == "rosenbrock23" and dynamics["time"] == 12.0
    np.testing.assert_array_equal(np.asarray(problem["teacher"]["u"]), 3.0 * np.eye(20)[:5])
    np.testing.assert_allclose(np.asarray(problem["teacher"]["c"]), np.diag([1.0, 0.8, 0.6, 0.4, 0.2]))
    # the quick profile keeps the teacher's structure at a small size
    quick = paper_scale.scenario(get_profile("quick"))
    k, d = quick["problem"]["model"]["features"], quick["problem"]["input"]["dim"]
    np.testing.assert_array_equal(np.asarray(quick["problem"]["teacher"]["u"]), 3.0 * np.eye(d)[:k])
    np.testing.assert_allclose(np.asarray(quick["problem"]["teacher"]["c"]), np.diag(np.linspace(1.0, 0.2, k)))
    # the sampled twins: paper_sampled.toml's N = 1000 and Monte Carlo expectations, the documented sample sizes, all else equal
    for profile, samples in (("full", paper_scale.SAMPLED_SAMPLES), ("quick", paper_scale.QUICK_SAMPLES)):
        exact, twin = paper_scale.scenario(get_profile(profile)), paper_scale.scenario(get_profile(profile), sampled=True)
        assert twin["problem"]["task"]["prompt_length"] == 1000
        assert twin["problem"]["expectation"] == {"method": "monte_carlo", "samples": samples, "seed": 0}
        assert {key: v for key, v in twin["problem"].items() if key not in ("task", "expectation")} == {
            key: v for key, v in exact["problem"].items() if key not in ("task", "expectation")
        }
        assert (twin["init"], twin["dynamics"]) == (exact["init"], exact["dynamics"])


def test_quick_profile_reports_the_staircase_per_phase(tmp_path):
    """Pass or inconclusive, with one table row per phase of the one phase rule (the run report's phases), for the
    exact flow and its sampled twin (the sampled field), and the loss gap between them."""
    threads = numba.get_num_threads()
    result, out = _check(tmp_path)
    assert numba.get_num_threads() == threads  # the run's one numba thread is given back
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert result.verdict in ("pass", "inconclusive"), m
    for prefix, evidence, folder in (("", "phases.json", "scenario"), ("sampled_", "sampled_phases.json", "sampled")):
        record = json.loads((out / evidence).read_text())
        assert record["status"] == "completed" and m[prefix + "phases"] >= 2 and m[prefix + "plateaus"] >= 1
        traj = read_trajectory(out / folder / "run" / "trajectory.csv")
        drawn = report_phases.find_phases(traj, report_phases.find_plateaus(traj))
        rows = [row for row in result.table if row["run"].startswith("sampled" if prefix else "exact")]
        assert len(rows) == len(record["phases"]) == len(drawn) == m[prefix + "phases"]
        for row, phase in zip(rows, drawn, strict=True):
            assert (row["entry"], row["exit"]) == (phase.t_start, phase.t_stop)
            assert row["variation"] == pytest.approx(phase.variation) and row["≤ 25%"] == (phase.variation <= PAPER_VARIATION)
            assert row["level"] > 0 and "λ_min range" in row and "loss" in row
        assert m[prefix + "max_phase_variation"] == pytest.approx(max(p.variation for p in drawn))
        assert m[prefix + "max_interior_variation"] <= paper_scale.FAIL_VARIATION  # else the verdict would be fail
        assert m[prefix + "max_interior_variation"] <= m[prefix + "max_phase_variation"]
        assert m[prefix + "final_loss"] < 0.1 * record["loss_initial"]
    # the gap of the two loss curves, recomputed from the trajectories: L_N(sampled) − L(exact) over the exact decrease
    exact, twin = (read_trajectory(out / f / "run" / "trajectory.csv") for f in ("scenario", "sampled"))
    gap = np.max(np.abs(np.interp(exact["time"], twin["time"], twin["loss"]) - exact["loss"])) / (exact["loss"][0] - exact["loss"][-1])
    assert m["loss_gap"] == pytest.approx(gap, rel=1e-6) and 0 < m["loss_gap"] < 1
    for path in result.evidence:
        assert (tmp_path / path).exists(), path


def test_fails_when_lambda_min_jumps_within_a_phase(tmp_path, monkeypatch):
    """λ_min read 4× too high on every other row: every phase's interior varies by > 50%: fail."""
    original = paper_scale.run_training

    def jumpy(*args, **kwargs):
        run = original(*args, **kwargs)
        run.trajectory["sigma_min"][1::2] *= 4.0
        return run

    monkeypatch.setattr(paper_scale, "run_training", jumpy)
    result, _ = _check(tmp_path)
    assert result.verdict == "fail", {k: v.value for k, v in result.metrics.items()}
    assert result.metrics["max_phase_variation"].value > paper_scale.FAIL_VARIATION
    assert result.metrics["max_interior_variation"].value > paper_scale.FAIL_VARIATION
    assert result.metrics["paper_phase_fraction"].value == 0.0


def test_fails_when_only_the_sampled_flow_jumps(tmp_path, monkeypatch):
    """The sampled flow is judged too: λ_min 4× too high on every other row of its run alone: fail, the exact run's metrics unchanged."""
    original = paper_scale.run_training

    def jumpy_sampled(directory, *args, **kwargs):
        run = original(directory, *args, **kwargs)
        if directory.name == "sampled":
            run.trajectory["sigma_min"][1::2] *= 4.0
        return run

    monkeypatch.setattr(paper_scale, "run_training", jumpy_sampled)
    result, _ = _check(tmp_path)
    assert result.verdict == "fail", {k: v.value for k, v in result.metrics.items()}
    assert result.metrics["sampled_max_interior_variation"].value > paper_scale.FAIL_VARIATION
    assert result.metrics["max_interior_variation"].value <= paper_scale.FAIL_VARIATION


def test_inconclusive_without_a_staircase(tmp_path, monkeypatch):
    """No plateau found: one phase spans each run, which says nothing about phases: inconclusive, the variation n/a."""
    monkeypatch.setattr(paper_scale, "find_plateaus", lambda *args: [])
    result, _ = _check(tmp_path)
    assert result.verdict == "inconclusive"
    assert result.metrics["phases"].value == 1 and not result.metrics["max_phase_variation"].applicable
    assert result.metrics["sampled_phases"].value == 1 and not result.metrics["sampled_max_phase_variation"].applicable
    assert len(result.table) == 2


def test_a_jump_at_the_phase_edges_alone_is_not_a_fail(tmp_path, monkeypatch):
    """λ_min 4× too high on the first and last rows only (where phase edges fall): whole phases vary by > 50%,
    the interiors do not — the verdict must not turn on where the rule puts the edges: not fail."""
    original = paper_scale.run_training

    def edgy(*args, **kwargs):
        run = original(*args, **kwargs)
        run.trajectory["sigma_min"][[0, -1]] *= 4.0
        return run

    monkeypatch.setattr(paper_scale, "run_training", edgy)
    result, _ = _check(tmp_path)
    assert result.metrics["max_phase_variation"].value > paper_scale.FAIL_VARIATION
    assert result.metrics["max_interior_variation"].value <= paper_scale.FAIL_VARIATION
    assert result.verdict != "fail"
