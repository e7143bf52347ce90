"""``simulate_ensemble`` against ``simulate``: each member is its own single run (same steps, rows to rounding)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landscape.cases import near_teacher_measure, orthogonal_teacher_landscape
from landscape.dynamics import simulate
from landscape.dynamics.ensemble import ClosedFormBatch, FlowBatch, VmapBatch, simulate_ensemble
from landscape.dynamics.flow import Layout, ParticleFlow
from landscape.dynamics.simulate import _initial_state
from landscape.model.measure import ParticleMeasure

SETTINGS = {
    "rk23": {"time": 0.6, "step_size": 0.05, "integrator": "rk23", "rtol": 1e-6, "atol": 1e-9, "record_every": 2},
    "dopri5-wfr-eta": {
        "time": 0.4, "step_size": 0.05, "integrator": "dopri5", "timescale_ratio": 3.0,
        "birth_death": {"kind": "wfr", "rate": 0.5},
    },
    "rk4-fixed": {"steps": 7, "step_size": 0.05, "integrator": "rk4", "record_every": 3},
}


def _members(count: int) -> list[ParticleMeasure]:
    return [near_teacher_measure(4, 2, 3, spread=0.4, seed=seed) for seed in range(count)]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_each_member_is_its_single_run(name):
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    measures = _members(3)
    runs = simulate_ensemble(landscape, measures, SETTINGS[name])
    for measure, run in zip(measures, runs, strict=True):
        single = simulate(landscape, measure, SETTINGS[name])
        assert run.result.status == single.result.status == "completed"
        assert run.result.steps == single.result.steps
        assert run["step"].tolist() == single["step"].tolist()
        for column in ("time", "loss", "energy", "grad_norm", "sigma_min", "energy_defect", "step_size"):
            # the last step is T − t: a rounding difference in t is relative 1e-10 of a small step
            np.testing.assert_allclose(run[column], single[column], rtol=1e-10, atol=1e-12, err_msg=column)
        for key, value in single.final.items():
            np.testing.assert_allclose(run.final[key], value, rtol=1e-10, atol=1e-14)


def test_members_of_different_problems_and_own_steps():
    """Two problems of one shape: each member keeps its own adaptive step sequence."""
    problems = [orthogonal_teacher_landscape(neurons=2, dim=3, scale=s) for s in (0.8, 2.5)]
    measures = _members(2)
    settings = SETTINGS["rk23"]
    runs = simulate_ensemble(problems, measures, settings)
    singles = [simulate(lp, m, settings) for lp, m in zip(problems, measures, strict=True)]
    assert [r.result.steps for r in runs] == [s.result.steps for s in singles]
    assert runs[0].result.steps != runs[1].result.steps or not np.allclose(runs[0]["step_size"], runs[1]["step_size"])
    for run, single in zip(runs, singles, strict=True):
        np.testing.assert_allclose(run["loss"], single["loss"], rtol=1e-10)


def test_a_member_that_breaks_stops_alone():
    """Members whose weights are driven to zero stop at their own step, with their status."""
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    measures = _members(2)
    settings = {"steps": 40, "step_size": 2.0, "integrator": "euler", "birth_death": {"kind": "wfr", "rate": 50.0}}
    runs = simulate_ensemble(landscape, measures + [measures[0]], settings)
    singles = [simulate(landscape, m, settings) for m in measures]
    assert [r.result.status for r in runs] == ["negative_weight"] * 3
    assert [r.result.steps for r in runs] == [s.result.steps for s in singles] + [singles[0].result.steps]
    assert singles[0].result.steps != singles[1].result.steps
    assert runs[0].final is None


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"steps": 2, "integrator": "rosenbrock23", "time": None}, "rosenbrock23"),
        ({"steps": 2, "perturbation": {"kind": "isotropic", "radius": 0.1, "g_thr": 1.0, "t_thr": 1.0}}, "perturbation"),
        ({"steps": 2, "birth_death": {"kind": "stochastic", "rate": 1.0}}, "stochastic"),
    ],
)
def test_unsupported_settings_are_refused(settings, match):
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    settings = {k: v for k, v in settings.items() if v is not None}
    with pytest.raises(ValueError, match=match):
        simulate_ensemble(landscape, _members(1), settings)


def test_members_of_different_shapes_are_refused():
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    measures = [near_teacher_measure(4, 2, 3), near_teacher_measure(5, 2, 3)]
    with pytest.raises(ValueError, match="same M"):
        simulate_ensemble(landscape, measures, SETTINGS["rk4-fixed"])


@pytest.mark.parametrize("batch", ["vmap", "closed-form"])
@pytest.mark.parametrize("eta, alpha", [(math.inf, 0.0), (3.0, 0.5)])
def test_batched_fields_equal_the_member_loop(batch, eta, alpha):
    """The batched fields (torch.func.vmap; the compiled closed-form loop) against one
    ParticleFlow.evaluate per member, to rounding; a member with a singular Σ_µµ is marked
    singular and the others are unaffected."""
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    layout = Layout(4, 2, 3, not math.isinf(eta))
    flow = ParticleFlow(landscape, layout, eta, alpha)
    measures = _members(4)
    singular = ParticleMeasure(np.c_[measures[0].a[:, :1], np.zeros((4, 1))], measures[0].w)
    y = torch.stack([_initial_state(landscape, layout, m) for m in measures[:3]] + [_state(layout, singular)])
    members = np.array([True, False, True, True])
    batched = VmapBatch(flow, 4) if batch == "vmap" else ClosedFormBatch(landscape, layout, eta, alpha)
    fast, reference = batched(y, members), FlowBatch([flow] * 4)(y, members)
    assert fast.problem.tolist() == ["", "nonfinite", "", "singular"]
    assert reference.problem[[0, 2, 3]].tolist() == ["", "", "singular"]
    torch.testing.assert_close(fast.dy[[0, 2]], reference.dy[[0, 2]], rtol=1e-13, atol=1e-15)
    assert not fast.dy[1].any()
    for name in ("energy", "loss", "grad_norm", "sigma_min", "sigma_max"):
        np.testing.assert_allclose(getattr(fast, name)[[0, 2]], getattr(reference, name)[[0, 2]], rtol=1e-13, err_msg=name)


def _state(layout: Layout, measure: ParticleMeasure) -> torch.Tensor:
    a, w, p = measure.tensors(torch.float64, torch.device("cpu"))
    gamma = torch.eye(layout.k, dtype=torch.float64) if layout.gamma else None
    return layout.pack(a, w, p, gamma, 0.0)


def test_vectorised_step_factors_equal_the_scalar_rule():
    from landscape.dynamics.ensemble import _step_factors
    from landscape.dynamics.integrators import step_factor

    norm = np.array([0.0, 1e-300, 1e-8, 0.3, 1.0, 2.5, 1e6, 1e300, math.inf])
    expected = [step_factor(float(x), -1.0 / 3) for x in norm]
    assert _step_factors(norm, -1.0 / 3).tolist() == expected


@pytest.mark.parametrize("name", ["rk23", "rk4-fixed"])
def test_reference_engine_members_are_their_single_runs(name):
    """The lock step on the vmapped autograd field (tensors in, numpy bookkeeping) against single reference runs."""
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    measures = _members(2)
    settings = {**SETTINGS[name], "engine": "reference"}
    runs = simulate_ensemble(landscape, measures, settings)
    for measure, run in zip(measures, runs, strict=True):
        single = simulate(landscape, measure, settings)
        assert run.result.status == single.result.status == "completed"
        assert run["step"].tolist() == single["step"].tolist()
        for column in ("time", "loss", "energy", "grad_norm", "sigma_min", "sigma_cond", "entropy", "energy_defect", "step_size"):
            np.testing.assert_allclose(run[column], single[column], rtol=1e-10, atol=1e-12, err_msg=column)
        for key, value in single.final.items():
            np.testing.assert_allclose(run.final[key], value, rtol=1e-10, atol=1e-14)
