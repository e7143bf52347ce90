"""Claim ``conditioning`` (THEORY.md §10.5): the quick profile, the phase rule, and a broken flow that fails."""

from __future__ import annotations

import json

import numpy as np
import pytest

from landscape.dynamics import flow as flow_module
from verification import conditioning
from verification.parallel import TaskPool
from verification.profiles import Profile, get_profile
from verification.scenarios import prepare_evidence_dir


def test_phases_find_a_plateau_between_two_drops():
    time = np.linspace(0.0, 30.0, 301)
    # a drop of 1.5 decades by t = 5, flat until t = 20, a drop of 2 decades by t = 30
    level = np.where(time < 5, -0.3 * time, np.where(time < 20, -1.5 - 1e-4 * (time - 5), -1.5015 - 0.2 * (time - 20)))
    found = conditioning.phases(time, 10.0**level)
    plateaus = [(first, last) for kind, first, last in found if kind == "plateau"]
    assert len(plateaus) == 1
    first, last = plateaus[0]
    assert time[first] == pytest.approx(5.0, abs=0.2) and time[last] == pytest.approx(20.0, abs=0.2)
    assert found[0][1] == 0 and found[-1][2] == time.size - 1
    assert all(a[2] == b[1] for a, b in zip(found, found[1:], strict=False))  # contiguous
    for kind, first, last in found:
        if kind == "transition":  # each transition spans at most about one decade
            assert level[first] - level[last] <= 1.0 + 0.2 + 1e-9
    assert [kind for kind, _, _ in found].count("transition") == 2 + 2


def test_phases_without_plateau_cut_decades_and_bad_shapes_raise():
    time = np.linspace(0.0, 10.0, 51)
    found = conditioning.phases(time, 10.0 ** (-0.25 * time))  # 2.5 decades, no plateau
    assert [kind for kind, _, _ in found] == ["transition"] * 3
    assert [time[first] for _, first, _ in found] == pytest.approx([0.0, 4.0, 8.0])
    with pytest.raises(ValueError, match="shapes"):
        conditioning.phases(time, np.ones(3))


@pytest.mark.slow
def test_conditioning_quick_profile_passes(tmp_path):
    out = prepare_evidence_dir(tmp_path / conditioning.CLAIM_ID)
    result = conditioning.check(get_profile("quick"), out, TaskPool())
    assert result.id == "conditioning"
    assert result.verdict == "pass", result.metrics
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert conditioning.FLOOR_FRACTION <= m["worst_min_ratio"] <= m["min_ratio"] <= 1.0
    assert 1e-7 < m["min_inverse_condition"] <= 1.0
    assert 0.0 <= m["phases_within_paper"] <= 1.0 and 0.0 <= m["max_phase_variation"] < 1.0
    assert m["final_gap_fraction"] <= conditioning.TRAINED_FRACTION
    runs = json.loads((out / "runs.json").read_text())
    assert len(runs) == 2 and all(r["status"] == "completed" for r in runs)
    for path in result.evidence:
        assert (tmp_path / path).exists(), path
    assert result.table and {"seed", "phase", "variation"} <= set(result.table[0])


def test_conditioning_fails_when_the_flow_collapses_the_particles(tmp_path, monkeypatch):
    """A broken velocity field that pulls every particle to the particles' mean makes Σ_µµ singular: fail."""
    original = flow_module.ParticleFlow._field

    def collapse(self, y):
        dy, *rest = original(self, y)
        a, w, _, _, _ = self.layout.unpack(y)
        broken = dy.clone()
        da, dw, _, _, _ = self.layout.unpack(broken)
        da.copy_(-(a - a.mean(0)))
        dw.copy_(-(w - w.mean(0)))
        return (broken, *rest)

    monkeypatch.setattr(flow_module.ParticleFlow, "_field", collapse)
    out = prepare_evidence_dir(tmp_path / conditioning.CLAIM_ID)
    result = conditioning.check(Profile("quick", seeds=1, scale=1.0), out, TaskPool())
    assert result.verdict == "fail", {k: v.value for k, v in result.metrics.items()}
    assert result.metrics["worst_min_ratio"].value < conditioning.FAIL_FRACTION
    assert json.loads((out / "runs.json").read_text())[0]["status"] == "singular"
