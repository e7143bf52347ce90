"""The closed-form field (:mod:`landscape.dynamics.fast_field`, ``engine = "fast"``) against the
autograd reference of :class:`ParticleFlow` (docs/theory.md §6): field, diagnostics and
Jacobian-vector products to rounding on erf and relu, random and extreme measures, with and
without birth–death and at finite η; where it does not apply, the reference runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landscape import AttentionLandscape, ExactGaussianExpectation, SampledExpectation, get_activation
from landscape.cases import near_teacher_measure, orthogonal_teacher, orthogonal_teacher_landscape
from landscape.dynamics import simulate
from landscape.dynamics.config import parse_dynamics
from landscape.dynamics.flow import Layout, ParticleFlow
from landscape.model.measure import ParticleMeasure

RTOL = 1e-12
M, K, D = 6, 2, 3


def _measure(case: str) -> ParticleMeasure:
    """Six particles near the 2-neuron teacher in d = 3, with an extreme feature by ``case``."""
    rng = np.random.default_rng(11)
    base = near_teacher_measure(M, K, D, spread=0.4, seed=3)
    a, w = base.a.copy(), base.w.copy()
    p = rng.uniform(0.5, 1.5, M)
    if case == "coincident":
        a[1], w[1] = a[0] + 0.3, w[0]
    elif case == "antipodal":
        w[1] = -w[0]
    elif case == "large":
        w[0] *= 40.0
        w[1] = w[0]
    elif case == "zero":
        w[2] = 0.0
    return ParticleMeasure(a, w, p / p.sum())


def _flows(activation: str, eta: float, alpha: float, case: str, ridge: float = 0.0):
    teacher = orthogonal_teacher(K, D, 1.5, activation)
    act = get_activation(activation)
    landscape = AttentionLandscape(teacher, ExactGaussianExpectation(teacher, act), noise=0.1, ridge=ridge)
    layout = Layout(M, K, D, not math.isinf(eta))
    measure = _measure(case)
    a, w, p = measure.tensors()
    gamma = landscape.gamma_star(a, w, p) + 0.1 if layout.gamma else None
    y = layout.pack(a, w, p, gamma, 0.25)
    fast = ParticleFlow(landscape, layout, eta, alpha)
    reference = ParticleFlow(landscape, layout, eta, alpha, engine="reference")
    assert fast.engine == "fast" and fast.fallback is None and reference.engine == "reference"
    return fast, reference, y


def _assert_close(fast, reference, what: str, rtol: float = RTOL) -> None:
    fast, reference = np.asarray(fast, dtype=float), np.asarray(reference, dtype=float)
    scale = float(np.abs(reference).max())
    err = float(np.abs(fast - reference).max())
    assert err <= rtol * scale, f"{what}: error {err:.3e}, scale {scale:.3e}"


CASES = [
    ("erf", math.inf, 0.0, "random"),
    ("erf", math.inf, 1.5, "random"),
    ("erf", 3.0, 0.0, "random"),
    ("erf", 3.0, 0.7, "coincident"),
    ("erf", math.inf, 1.5, "coincident"),
    ("erf", math.inf, 0.0, "antipodal"),
    ("erf", math.inf, 1.5, "large"),
    ("erf", math.inf, 0.0, "zero"),
    ("relu", math.inf, 0.0, "random"),
    ("relu", math.inf, 1.5, "random"),
    ("relu", 3.0, 0.7, "random"),
    ("relu", math.inf, 1.5, "coincident"),
    ("relu", math.inf, 0.0, "antipodal"),
    ("relu", 3.0, 0.0, "large"),
    ("relu", math.inf, 1.5, "zero"),
]


@pytest.mark.parametrize("activation, eta, alpha, case", CASES)
def test_fast_field_equals_the_reference(activation, eta, alpha, case):
    fast, reference, y = _flows(activation, eta, alpha, case)
    f, r = fast.evaluate(y), reference.evaluate(y)
    _assert_close(f.dy, r.dy, "dy")
    _assert_close(f.first_variation, r.first_variation, "first_variation")
    for name in ("energy", "loss", "grad_norm", "rate", "sigma_min", "sigma_max"):
        _assert_close(getattr(f, name), getattr(r, name), name)
    _assert_close(fast.energy(y), reference.energy(y), "energy()")
    torch.testing.assert_close(fast(y), f.dy, rtol=0, atol=0)
    assert fast.evaluations == 2 and reference.evaluations == 1


@pytest.mark.parametrize("activation, eta, alpha, case", CASES)
def test_fast_jacobian_vector_product_equals_the_reference(activation, eta, alpha, case):
    fast, reference, y = _flows(activation, eta, alpha, case)
    lf, lr = fast.linearize(y), reference.linearize(y)
    _assert_close(lf.value.dy, lr.value.dy, "dy")
    v = torch.as_tensor(np.random.default_rng(5).standard_normal(y.shape))
    _assert_close(lf.jvp(v), lr.jvp(v), "jvp")
    assert fast.jacobian_products == reference.jacobian_products == 1


def test_ridge_takes_the_fast_path_to_rounding():
    fast, reference, y = _flows("erf", 3.0, 0.5, "random", ridge=0.05)
    f, r = fast.evaluate(y), reference.evaluate(y)
    _assert_close(f.dy, r.dy, "dy")
    _assert_close(f.loss, r.loss, "loss")
    v = torch.as_tensor(np.random.default_rng(2).standard_normal(y.shape))
    _assert_close(fast.linearize(y).jvp(v), reference.linearize(y).jvp(v), "jvp")


def test_a_singular_moment_matrix_raises_like_the_reference():
    fast, reference, y = _flows("erf", math.inf, 0.0, "random")
    y = y.clone()
    fast.layout.unpack(y)[0].zero_()  # a = 0: Σ_µµ = 0
    for flow in (fast, reference):
        with pytest.raises(torch.linalg.LinAlgError):
            flow.evaluate(y)


def test_a_non_finite_state_gives_a_non_finite_field_like_the_reference():
    """NaN in, NaN out (torch's linear algebra does not raise on it; the run then stops as non-finite)."""
    fast, reference, y = _flows("relu", 3.0, 0.5, "random")
    y = y.clone()
    y[3] = math.nan
    for flow in (fast, reference):
        info = flow.evaluate(y)
        assert not info.finite and math.isnan(info.sigma_min)


def test_the_reference_runs_where_the_closed_forms_do_not_apply():
    teacher = orthogonal_teacher(K, D, 1.5, "erf")
    erf, tanh = get_activation("erf"), get_activation("tanh")
    x = np.random.default_rng(0).standard_normal((64, D))
    problems = {
        "monte_carlo": AttentionLandscape(teacher, SampledExpectation(teacher, erf, x)),
        "finite prompt": AttentionLandscape(teacher, ExactGaussianExpectation(teacher, erf, fourth_samples=64), prompt_length=50),
        "no closed-form": AttentionLandscape(teacher, ExactGaussianExpectation(teacher, tanh)),
        "bias": AttentionLandscape(teacher, ExactGaussianExpectation(teacher, erf, bias=True)),
    }
    for words, landscape in problems.items():
        flow = ParticleFlow(landscape, Layout(M, K, landscape.input_dim, False))
        assert flow.engine == "reference" and words in flow.fallback, flow.fallback
    with pytest.raises(ValueError, match="engine must be one of fast, reference"):
        ParticleFlow(orthogonal_teacher_landscape(K, D), Layout(M, K, D, False), engine="autograd")


def test_engine_setting_parses_and_round_trips():
    assert parse_dynamics({}).engine == "fast"
    settings = parse_dynamics({"engine": "reference"})
    assert settings.engine == "reference" and parse_dynamics(settings.to_table()) == settings
    assert "engine" not in parse_dynamics({}).to_table()
    with pytest.raises(ValueError, match="engine"):
        parse_dynamics({"engine": "numba"})


@pytest.mark.parametrize(
    "settings",
    [
        {"time": 1.0, "step_size": 0.05, "integrator": "rk23", "rtol": 1e-7, "atol": 1e-10, "birth_death": {"kind": "wfr", "rate": 0.5}},
        {"time": 1.0, "step_size": 0.05, "integrator": "rosenbrock23", "rtol": 1e-6, "atol": 1e-9, "timescale_ratio": 4.0},
    ],
    ids=["rk23-wfr", "rosenbrock23-eta"],
)
def test_simulate_with_the_fast_engine_follows_the_reference(settings):
    """Whole trajectories agree to far below the integrator tolerance (the fields agree to rounding)."""
    landscape = orthogonal_teacher_landscape(K, D)
    measure = near_teacher_measure(M, K, D, spread=0.4, seed=1)
    fast = simulate(landscape, measure, settings)
    reference = simulate(landscape, measure, {**settings, "engine": "reference"})
    assert fast.result.completed and reference.result.completed
    assert fast.result.steps == reference.result.steps
    for column in ("time", "loss", "energy", "grad_norm", "energy_defect"):
        np.testing.assert_allclose(fast[column], reference[column], rtol=1e-9, atol=1e-12, err_msg=column)
    np.testing.assert_allclose(fast.final["w"], reference.final["w"], rtol=1e-9, atol=1e-12)
