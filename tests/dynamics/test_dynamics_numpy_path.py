"""The fast engine's numpy integration path against the torch path.

``simulate`` integrates the closed-form field on numpy arrays (``simulate._explicit_step``) and
the reference field on tensors, with the one arithmetic of :mod:`landscape.dynamics.integrators`.
Checked here: one step of every scheme on numpy arrays equals the same step on tensors (state,
error estimate, error norm, stiffness ratio, next step), and whole runs of the fast engine equal
the reference engine's, row by row and column by column, to rounding.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from landscape.cases import near_teacher_measure, orthogonal_teacher_landscape
from landscape.dynamics import COLUMNS, simulate
from landscape.dynamics.flow import FieldValue, Layout, ParticleFlow
from landscape.dynamics.integrators import TABLEAUS, StepSizeUnderflow, _rk_stages, _stiffness, adaptive_step, error_norm, rk_step
from landscape.dynamics.simulate import _initial_state, _numpy_mask

M, K, D = 5, 2, 3


def _flow_and_state(eta: float = math.inf, alpha: float = 0.0) -> tuple[ParticleFlow, torch.Tensor]:
    landscape = orthogonal_teacher_landscape(neurons=K, dim=D)
    layout = Layout(M, K, D, not math.isinf(eta))
    flow = ParticleFlow(landscape, layout, eta, alpha)
    assert flow.engine == "fast", flow.fallback
    return flow, _initial_state(landscape, layout, near_teacher_measure(M, K, D, spread=0.4, seed=3))


@pytest.mark.parametrize("scheme", sorted(TABLEAUS))
@pytest.mark.parametrize("eta, alpha", [(math.inf, 0.0), (2.0, 0.5)])
def test_one_step_on_arrays_equals_the_step_on_tensors(scheme, eta, alpha):
    flow, y = _flow_and_state(eta, alpha)
    tableau, h = TABLEAUS[scheme], 0.05
    k1 = flow(y)
    array_field = lambda z: flow(torch.from_numpy(z)).numpy()  # noqa: E731
    on_tensors = _rk_stages(flow, y, k1, h, tableau)
    on_arrays = _rk_stages(array_field, y.numpy(), k1.numpy(), h, tableau)
    assert isinstance(on_arrays[0], np.ndarray)
    np.testing.assert_allclose(on_arrays[0], on_tensors[0].numpy(), rtol=1e-14, atol=1e-16)
    for stage_a, stage_t in zip(on_arrays[2], on_tensors[2], strict=True):
        np.testing.assert_allclose(stage_a, stage_t.numpy(), rtol=1e-14, atol=1e-16)
    assert rk_step(array_field, y.numpy(), k1.numpy(), h, tableau)[0].tobytes() == on_arrays[0].tobytes()
    if tableau.b_low is None:
        assert on_arrays[1] is None and on_tensors[1] is None
        return
    np.testing.assert_allclose(on_arrays[1], on_tensors[1].numpy(), rtol=1e-12, atol=1e-18)
    mask_t = flow.layout.error_mask(y)
    mask_a = _numpy_mask(flow.layout)
    assert mask_a.tolist() == mask_t.tolist() and not mask_a.flags.writeable
    norms = [error_norm(error, y0, y1, 1e-6, 1e-9, mask) for (y1, error, _), y0, mask in
             ((on_arrays, y.numpy(), mask_a), (on_tensors, y, mask_t))]
    assert norms[0] == pytest.approx(norms[1], rel=1e-13) and norms[0] > 0
    ratios = [_stiffness(stages, h, tableau, mask) for (_, _, stages), mask in ((on_arrays, mask_a), (on_tensors, mask_t))]
    assert (ratios[0] is None) == (ratios[1] is None) == (tableau.probe is None)
    if tableau.probe is not None:
        assert ratios[0] == pytest.approx(ratios[1], rel=1e-12) and ratios[0] > 0
    results = [adaptive_step(f, y0, k, h, tableau, 1e-7, 1e-10, mask) for f, y0, k, mask in
               ((array_field, y.numpy(), k1.numpy(), mask_a), (flow, y, k1, mask_t))]
    assert results[0].rejected == results[1].rejected
    assert (results[0].h, results[0].h_next) == pytest.approx((results[1].h, results[1].h_next), rel=1e-12)
    np.testing.assert_allclose(results[0].y, results[1].y.numpy(), rtol=1e-14, atol=1e-16)


def test_error_norm_of_a_non_finite_error_is_inf_on_arrays_and_tensors():
    y = np.ones(4)
    mask = np.array([True, True, True, False])
    for error in (np.array([np.nan, 0.0, 0.0, 0.0]), np.array([np.inf, 1.0, 0.0, 0.0])):
        with np.errstate(all="raise"):  # the norm answers inf, never a floating-point warning
            assert error_norm(error, y, y + error, 1e-6, 1e-9, mask) == math.inf
        assert error_norm(torch.from_numpy(error), torch.from_numpy(y), torch.from_numpy(y + error), 1e-6, 1e-9,
                          torch.from_numpy(mask)) == math.inf


def test_a_blow_up_on_arrays_gives_no_warnings():
    """As on tensors (``test_adaptive_rejects_and_underflows``): a field that overflows at every trial
    shrinks the step to h_min; a huge but finite one is accepted with no stiffness estimate (overflowing norms)."""
    def explosive(y):
        return y * 1e300

    def huge(y):
        return np.full_like(y, 1e308)

    y, mask = np.ones(3), np.ones(3, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(StepSizeUnderflow):
            adaptive_step(explosive, y, explosive(y), 10.0, TABLEAUS["rk23"], 1e-6, 1e-9, mask)
        assert not np.isfinite(rk_step(explosive, y, explosive(y), 10.0, TABLEAUS["rk4"])[0]).any()
        result = adaptive_step(huge, y, huge(y), 1e-14, TABLEAUS["rk23"], 1e-6, 1e-9, mask)
        assert np.isfinite(result.y).all() and result.stiffness is None


def test_field_value_finite_on_the_cpu_sees_every_entry():
    value = FieldValue(torch.zeros(6, dtype=torch.float64), 1.0, 1.0, 0.0, 0.0, np.zeros(2), 1.0, 2.0)
    assert value.finite
    for bad in (math.nan, math.inf, -math.inf):
        dy = torch.zeros(6, dtype=torch.float64)
        dy[3] = bad
        assert not FieldValue(dy, 1.0, 1.0, 0.0, 0.0, np.zeros(2), 1.0, 2.0).finite
    assert not FieldValue(torch.zeros(6, dtype=torch.float64), 1.0, 1.0, 0.0, 0.0, np.zeros(2), math.nan, 2.0).finite


RUNS = {
    "euler": {"steps": 12, "step_size": 0.05, "integrator": "euler"},
    "heun-record-3": {"steps": 12, "step_size": 0.05, "integrator": "heun", "record_every": 3},
    "rk4": {"steps": 12, "step_size": 0.05, "integrator": "rk4"},
    "rk23": {"time": 0.5, "step_size": 0.05, "integrator": "rk23", "rtol": 1e-7, "atol": 1e-10},
    "dopri5-eta-wfr": {
        "time": 0.4, "step_size": 0.05, "integrator": "dopri5", "rtol": 1e-7, "atol": 1e-10, "timescale_ratio": 2.0,
        "birth_death": {"kind": "wfr", "rate": 0.5},
    },
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_fast_engine_run_equals_the_reference_run(name):
    """The whole run, numpy path with the closed-form field against the torch path with the autograd field:
    the same steps and rows, every column and the final measure to rounding."""
    landscape = orthogonal_teacher_landscape(neurons=K, dim=D)
    measure = near_teacher_measure(M, K, D, spread=0.4, seed=1)
    runs = {engine: simulate(landscape, measure, {**RUNS[name], "engine": engine}) for engine in ("fast", "reference")}
    fast, reference = runs["fast"], runs["reference"]
    assert fast.result.status == reference.result.status == "completed"
    assert fast.result.steps == reference.result.steps and fast.result.evaluations == reference.result.evaluations
    assert fast.result.stiff_since == reference.result.stiff_since
    assert set(fast.columns) == set(reference.columns) == set(COLUMNS) - {"events"}
    assert fast["step"].tolist() == reference["step"].tolist() and fast.events == reference.events
    for column in COLUMNS[:-1]:
        # the last adaptive step is T − t: a rounding difference in t is relative 1e-10 of a small step
        atol = 1e-11 if column in ("time", "step_size") else 1e-13
        np.testing.assert_allclose(fast[column], reference[column], rtol=1e-10, atol=atol, err_msg=column)
    assert set(fast.final) == set(reference.final)
    for key, value in reference.final.items():
        np.testing.assert_allclose(fast.final[key], value, rtol=1e-10, atol=1e-13, err_msg=key)
