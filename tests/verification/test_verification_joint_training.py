"""Claim ``joint-training``: the quick profile passes; a frozen W and a broken attention update fail."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from landscape.dynamics.config import parse_prompts
from landscape.dynamics.prompts import PromptTrainer, prompt_landscape
from landscape.io.problem import parse_problem
from landscape.model.measure import ParticleMeasure
from verification.claims import joint_training
from verification.parallel import TaskPool
from verification.profiles import get_profile
from verification.scenarios import prepare_evidence_dir


def _check(tmp_path):
    out = prepare_evidence_dir(tmp_path / joint_training.CLAIM_ID)
    return joint_training.check(get_profile("quick"), out, TaskPool()), out


@pytest.mark.slow
def test_joint_training_quick_profile_passes(tmp_path):
    result, out = _check(tmp_path)
    m = {name: metric.value for name, metric in result.metrics.items()}
    assert result.verdict == "pass", m
    gaps = [row["gap"] for row in json.loads((out / "gaps.json").read_text())]
    assert len(gaps) == len(joint_training.SETTINGS) and gaps[0] > gaps[-1] == m["largest_setting_gap"]
    assert m["largest_setting_gap"] <= joint_training.PASS_GAP and m["largest_setting_gamma_distance"] < 0.1
    assert m["control_ratio"] <= joint_training.PASS_CONTROL_RATIO and m["control_gap"] > m["largest_setting_gap"]
    assert not result.metrics["plateau_exit_gap"].applicable or m["flow_plateaus"] == m["joint_plateaus"]
    assert not result.metrics["paper_step_limit"].applicable and not result.metrics["paper_gamma_time"].applicable
    assert not any(metric.applicable for name, metric in result.metrics.items() if name.startswith("paper_"))
    for path in result.evidence:
        assert (tmp_path / path).exists(), path


@pytest.mark.slow
def test_joint_training_fails_when_w_is_frozen(tmp_path, monkeypatch):
    """attention_rate = 0 everywhere: W keeps Γ*(µ_0), the gap no better than the frozen control's: fail."""
    frozen = [(0.0, prompts, batch, lr) for _, prompts, batch, lr in joint_training.SETTINGS]
    monkeypatch.setattr(joint_training, "SETTINGS", frozen)
    result, _ = _check(tmp_path)
    assert result.verdict == "fail", {k: v.value for k, v in result.metrics.items()}
    assert result.metrics["control_ratio"].value == pytest.approx(1.0, abs=1e-12)  # the last setting is the control


def test_joint_training_fails_when_the_attention_update_is_broken(tmp_path, monkeypatch):
    """W climbs its gradient (a sign error): the runs blow up and stop, which fails the claim."""
    monkeypatch.setattr(PromptTrainer, "update_attention", lambda self, kq, pv, g_kq, g_pv: (kq + 2 * g_kq, pv + 2 * g_pv))
    result, out = _check(tmp_path)
    assert result.verdict == "fail", {k: v.value for k, v in result.metrics.items()}
    rows = json.loads((out / "gaps.json").read_text())
    assert sum(row["incomplete"] for row in rows) > 0


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_joint_training_settings_grow_together(profile):
    """Every step along the settings raises the attention rate and the batch, and keeps learning_rate · rate ≤ 0.2."""
    settings = get_profile(profile).pick(joint_training.SETTINGS, joint_training.FULL_SETTINGS)
    for (r0, _, b0, _), (r1, _, b1, lr1) in zip(settings, settings[1:], strict=False):
        assert r1 > r0 and b1 > b0 and lr1 * r1 <= 0.2 + 1e-12


def test_whiten_makes_sigma_the_identity_and_keeps_the_loss():
    """``a ↦ Σ_µµ^{-1/2} a`` on a skewed draw (Σ_µµ far from I) at finite N: Σ_µµ = I, L_N unchanged (§4)."""
    spec = parse_problem(joint_training._problem())
    landscape = prompt_landscape(spec, parse_prompts({}, spec.prompt_length))
    rng = np.random.default_rng(3)
    measure = ParticleMeasure(rng.standard_normal((5, 2)) @ np.array([[3.0, 0.0], [1.0, 0.2]]), rng.standard_normal((5, 3)) / np.sqrt(3))

    def sigma_and_loss(m):
        tensors = m.tensors(landscape.dtype, landscape.device)
        return landscape.moments(*tensors)[0].numpy(), float(landscape.loss(*tensors))

    sigma0, loss0 = sigma_and_loss(measure)
    assert np.abs(sigma0 - np.eye(2)).max() > 0.1
    sigma, loss = sigma_and_loss(joint_training.whiten(measure, landscape))
    np.testing.assert_allclose(sigma, np.eye(2), rtol=0, atol=1e-10)
    assert loss == pytest.approx(loss0, rel=1e-12, abs=0)


def test_the_paper_size_gap_can_hold_back_a_pass_but_never_fail():
    """The pass rule reads ``paper_gap_judged``: 0 where the profile does not run the paper's sizes (pass stays),
    the gap where it does (above PASS_GAP: inconclusive, not fail), NaN where a paper-size run stopped (no pass)."""
    claim = joint_training.rules()
    small = {"incomplete_runs": 0, "non_decreasing_steps": 0, "largest_setting_gap": 0.04, "largest_setting_sampled_gap": 0.05,
             "control_ratio": 0.27}
    assert claim.verdict({**small, "paper_gap_judged": 0.0}) == "pass"
    assert claim.verdict({**small, "paper_gap_judged": 0.1}) == "pass"
    assert claim.verdict({**small, "paper_gap_judged": 0.59}) == "inconclusive"
    assert claim.verdict({**small, "paper_gap_judged": float("nan")}) == "inconclusive"
    assert claim.verdict({**small, "largest_setting_gap": 0.5, "paper_gap_judged": 0.0}) == "fail"
    assert claim.verdict({**small, "largest_setting_sampled_gap": 0.5, "paper_gap_judged": 0.0}) == "fail"
    assert claim.verdict({**small, "largest_setting_sampled_gap": 0.3, "paper_gap_judged": 0.0}) == "inconclusive"


def test_the_gap_is_taken_at_the_joint_runs_rows():
    """A joint curve equal to the flow at its coarse rows has gap 0 though the flow falls steeply between two rows (the
    coarse curve is not interpolated across the descent); a curve off by 0.01 at one row has gap 0.01 / decrease."""
    t = np.linspace(0.0, 1.0, 1001)
    flow = {"status": "completed", "time": t.tolist(), "loss": (0.1 + np.exp(-200.0 * t)).tolist(), "final": [[0.0]]}
    rows = t[::50]
    joint = {"status": "completed", "time": rows.tolist(), "loss": (0.1 + np.exp(-200.0 * rows)).tolist(), "final": [[0.0]],
             "gamma_distance": [0.0]}
    assert joint_training._compare(joint, flow)[0] == pytest.approx(0.0, abs=1e-15)
    off = {**joint, "loss": [x + 0.01 * (i == 7) for i, x in enumerate(joint["loss"])]}
    decrease = 1.0 - np.exp(-200.0)
    assert joint_training._compare(off, flow)[0] == pytest.approx(0.01 / decrease, rel=1e-12)


def test_paper_comparison_reads_each_setting_on_its_horizon_and_the_first_descent():
    """Synthetic runs: the paper-size comparison gives each setting's gap on its horizon and on [0, PAPER_EARLY], the
    lag only where a setting shares the two-timescale run's step (its batches), and one metric per early gap."""
    t = np.linspace(0.0, 2.5, 2501)
    curve = 0.02 + 0.1 * np.exp(-20.0 * t)
    flow = {"status": "completed", "time": t.tolist(), "loss": curve.tolist(), "grad_norm": np.ones_like(t).tolist(),
            "final": [[0.0, 0.0]], "finite_n_offset": 0.01}
    decrease = curve[0] - curve.min()

    def run(rate, lr, horizon, bump):
        rows = np.arange(0.0, horizon + 1e-9, 0.05)
        loss = 0.02 + 0.1 * np.exp(-20.0 * rows) + bump * (np.abs(rows - 1.0) < 1e-9) + 0.5 * bump * (np.abs(rows - 0.2) < 1e-9)
        return {"attention_rate": rate, "learning_rate": lr, "horizon": horizon, "status": "completed", "time": rows.tolist(),
                "loss": loss.tolist(), "grad_norm": np.ones_like(rows).tolist(), "gamma_distance": [0.0] * len(rows),
                "final": [[0.0, 1.0]]}

    settings = [run(r, lr, h, b) for (r, lr, h), b in zip(joint_training.PAPER_SETTINGS, (0.02, 0.01, 0.004), strict=True)]
    limit = run(math.inf, 0.002, 2.5, 0.0)
    rows = joint_training._paper_comparison(flow, {**flow, "finite_n_offset": 0.002}, settings, limit)
    assert rows["completed"] and rows["gap"] == pytest.approx(0.01 / decrease, rel=1e-9)
    assert rows["smallest_rate_gap"] == pytest.approx(0.02 / decrease, rel=1e-9)
    assert rows["early_gaps"] == pytest.approx([0.01 / decrease, 0.005 / decrease, 0.002 / decrease], rel=1e-9)
    assert rows["lag"] == pytest.approx(0.01 / decrease, rel=1e-9) and rows["settings"][2]["lag"] is None
    assert rows["two_timescale_gap"] == pytest.approx(0.0, abs=1e-12) and rows["final_distance"] == pytest.approx(1.0)
    metrics = joint_training._paper_metrics(rows)
    assert set(metrics) == {name for name in joint_training.TOLERANCES if name.startswith("paper_") and name not in
                            ("paper_step_limit", "paper_gamma_time")}
    assert all(m.applicable for name, m in metrics.items() if "plateau" not in name)
    assert not any(m.applicable for m in joint_training._paper_metrics(None).values())
