"""The closed-form field (:mod:`landscape.dynamics.fast_field`, ``engine = "fast"``) against the
autograd reference of :class:`ParticleFlow` (docs/theory.md §6): field, diagnostics and
Jacobian-vector products to rounding on erf and relu and on the Mehler-series kernels (sigmoid,
tanh, gelu, mixed student and teacher activations; the reference with the torch series, inside
``reference_kernels()``), random and extreme measures, with and without birth–death and at
finite η; where it does not apply, the reference runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landscape import AttentionLandscape, ExactGaussianExpectation, SampledExpectation, get_activation
from landscape.cases import near_teacher_measure, orthogonal_teacher, orthogonal_teacher_landscape
from landscape.dynamics import fast_field, simulate
from landscape.dynamics.config import parse_dynamics
from landscape.dynamics.fast_field import unsupported
from landscape.dynamics.flow import Layout, ParticleFlow
from landscape.model.fused_series import reference_kernels
from landscape.model.kernels import HermiteQuadrature
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
    elif case == "small":  # below the Mehler series' Taylor radius r₀ = ε^{1/8} ≈ 0.011
        w[2] *= 0.004 / np.linalg.norm(w[2])
    return ParticleMeasure(a, w, p / p.sum())


def _flows(activation: str, eta: float, alpha: float, case: str, ridge: float = 0.0, teacher_activation: str | None = None):
    teacher = orthogonal_teacher(K, D, 1.5, teacher_activation or activation)
    act = get_activation(activation)
    expectation = ExactGaussianExpectation(teacher, act, quadrature=HermiteQuadrature(order=48))
    landscape = AttentionLandscape(teacher, expectation, noise=0.1, ridge=ridge)
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


SERIES_CASES = [
    ("sigmoid", math.inf, 0.0, "random"),
    ("sigmoid", math.inf, 1.5, "coincident"),
    ("sigmoid", 3.0, 0.7, "random"),
    ("sigmoid", math.inf, 0.0, "antipodal"),
    ("sigmoid", 3.0, 0.0, "zero"),
    ("sigmoid", math.inf, 1.5, "small"),
    ("sigmoid", math.inf, 0.0, "large"),
    ("tanh", math.inf, 0.0, "random"),
    ("tanh", 3.0, 0.7, "coincident"),
    ("tanh", math.inf, 1.5, "zero"),
    ("tanh", math.inf, 0.0, "antipodal"),
    ("gelu", math.inf, 1.5, "random"),
    ("gelu", 3.0, 0.0, "small"),
]
#: student activation, teacher activation: one kernel closed (erf–erf), the other a series, and the reverse.
MIXED_CASES = [("erf", "sigmoid", math.inf, 1.5, "random"), ("sigmoid", "erf", 3.0, 0.7, "zero"), ("tanh", "gelu", math.inf, 0.0, "coincident")]


def _check_field(fast, reference, y) -> None:
    f, r = fast.evaluate(y), reference.evaluate(y)
    _assert_close(f.dy, r.dy, "dy")
    _assert_close(f.first_variation, r.first_variation, "first_variation")
    for name in ("energy", "loss", "grad_norm", "rate", "sigma_min", "sigma_max"):
        _assert_close(getattr(f, name), getattr(r, name), name)
    _assert_close(fast.energy(y), reference.energy(y), "energy()")
    torch.testing.assert_close(fast(y), f.dy, rtol=0, atol=0)
    assert fast.evaluations == 2 and reference.evaluations == 1


def _check_jvp(fast, reference, y) -> None:
    lf, lr = fast.linearize(y), reference.linearize(y)
    _assert_close(lf.value.dy, lr.value.dy, "dy")
    _assert_close(lf.value.first_variation, lr.value.first_variation, "first_variation")
    v = torch.as_tensor(np.random.default_rng(5).standard_normal(y.shape))
    _assert_close(lf.jvp(v), lr.jvp(v), "jvp")
    assert fast.jacobian_products == reference.jacobian_products == 1


@pytest.mark.parametrize("activation, eta, alpha, case", CASES)
def test_fast_field_equals_the_reference(activation, eta, alpha, case):
    _check_field(*_flows(activation, eta, alpha, case))


@pytest.mark.parametrize("activation, eta, alpha, case", CASES)
def test_fast_jacobian_vector_product_equals_the_reference(activation, eta, alpha, case):
    _check_jvp(*_flows(activation, eta, alpha, case))


@pytest.mark.parametrize("activation, eta, alpha, case", SERIES_CASES)
def test_the_fast_series_field_and_jvp_equal_the_torch_reference(activation, eta, alpha, case):
    fast, reference, y = _flows(activation, eta, alpha, case)
    with reference_kernels():
        _check_field(fast, reference, y)
        _check_jvp(fast, reference, y)


@pytest.mark.parametrize("activation, teacher, eta, alpha, case", MIXED_CASES)
def test_mixed_closed_form_and_series_kernels_equal_the_reference(activation, teacher, eta, alpha, case):
    fast, reference, y = _flows(activation, eta, alpha, case, teacher_activation=teacher)
    _check_field(fast, reference, y)
    _check_jvp(fast, reference, y)


def test_a_series_ridge_and_a_singular_moment_matrix_behave_like_the_reference():
    fast, reference, y = _flows("sigmoid", 3.0, 0.5, "random", ridge=0.05)
    _check_field(fast, reference, y)
    _check_jvp(fast, reference, y)
    fast, reference, y = _flows("tanh", math.inf, 0.0, "random")
    y = y.clone()
    fast.layout.unpack(y)[0].zero_()  # a = 0: Σ_µµ = 0
    for flow in (fast, reference):
        with pytest.raises(torch.linalg.LinAlgError):
            flow.evaluate(y)


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
        "bias": AttentionLandscape(teacher, ExactGaussianExpectation(teacher, tanh, bias=True)),
    }
    for words, landscape in problems.items():
        assert words in unsupported(landscape), unsupported(landscape)
        if words != "monte_carlo":  # the sampled backend has its own fast engine (.sampled_field)
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


def test_the_series_field_of_a_batch_equals_its_members():
    """``FastField.evaluate_batch`` (ensembles) on a series kernel: each member as :meth:`ParticleFlow.evaluate`
    gives it; a member with ``a = 0`` (``Σ_µµ = 0``) is marked singular (code 2), one outside ``members`` is left out."""
    fast, reference, y = _flows("sigmoid", 3.0, 0.5, "random")
    singular = y.clone()
    fast.layout.unpack(singular)[0].zero_()
    ys = torch.stack([y, singular, 1.1 * y]).numpy()
    dy, stats, problem = fast._fast.evaluate_batch(ys, np.array([True, True, False]))
    assert problem.tolist() == [0, 2, 1] and not dy[2].any() and np.isnan(stats[1:]).all()
    value = reference.evaluate(y)
    _assert_close(dy[0], value.dy, "dy")
    _assert_close(stats[0], [value.energy, value.loss, value.grad_norm**2, value.sigma_min, value.sigma_max], "stats")


@pytest.mark.parametrize("activation, eta, alpha", [("erf", math.inf, 0.0), ("erf", 3.0, 0.7), ("relu", math.inf, 1.5), ("relu", 3.0, 0.0)])
def test_the_closed_form_field_of_a_batch_equals_its_members(activation, eta, alpha):
    """``FastField.evaluate_batch`` on closed forms (one compiled loop, in-kernel ``k×k`` algebra):
    random members each as :meth:`FastField.evaluate` gives it, to rounding; a member with ``a = 0``
    is marked singular (code 2), one with a NaN weight gets a non-finite field (code 1) and NaN ``Σ_µµ`` eigenvalues
    (like the single evaluation), one outside ``members`` is left out."""
    fast, _, y = _flows(activation, eta, alpha, "random")
    layout, rng = fast.layout, np.random.default_rng(7)
    rows = []
    for scale in (0.6, 1.0, 1.7, 2.5):
        a, w, p, gamma, _ = layout.unpack(y)
        member = layout.pack(
            a + scale * torch.as_tensor(rng.standard_normal(a.shape)), w * scale + torch.as_tensor(rng.standard_normal(w.shape)),
            p * torch.as_tensor(rng.uniform(0.5, 1.5, p.shape)), None if gamma is None else gamma + 0.2 * scale, 0.1 * scale,
        )
        rows.append(member)
    singular, broken = y.clone(), y.clone()
    layout.unpack(singular)[0].zero_()
    layout.unpack(broken)[1][0, 0] = math.nan
    ys = torch.stack([*rows, singular, broken, y]).numpy()
    dy, stats, problem = fast._fast.evaluate_batch(ys, np.array([True] * 6 + [False]))
    assert problem.tolist() == [0] * 4 + [2, 1, 1]
    assert not dy[6].any() and np.isnan(stats[4]).all() and np.isnan(stats[6]).all()
    assert not np.isfinite(dy[5]).all() and np.isnan(stats[5, 3:]).all()
    single = fast._fast.evaluate(ys[5])
    assert not np.isfinite(single.dy).all() and math.isnan(single.sigma_min)
    for i in range(4):
        value = fast._fast.evaluate(ys[i])
        _assert_close(dy[i], value.dy, f"dy {i}")
        _assert_close(stats[i], [value.energy, value.loss, value.grad_sq, value.sigma_min, value.sigma_max], f"stats {i}")


def test_the_batch_kernels_small_solve_and_eigenvalues_equal_lapack():
    """The in-kernel ``k×k`` algebra of the closed-form batch against numpy's LAPACK: LU solves and the
    extreme eigenvalues of random symmetric matrices (k = 1…5, ill-conditioned ones included), an
    exactly singular matrix refused, non-finite input giving NaN."""
    rng = np.random.default_rng(3)
    for k in range(1, 6):
        for cond in (1.0, 1e6, 1e12):
            q = np.linalg.qr(rng.standard_normal((k, k)))[0]
            a = (q * (rng.choice([-1.0, 1.0], k) * np.geomspace(1.0, 1.0 / cond, k))) @ q.T
            a = 0.5 * (a + a.T)
            b = rng.standard_normal((k, 3))
            out = np.empty((k, 3))
            assert fast_field._lu_solve(a, b, np.empty((k, k)), out)
            np.testing.assert_allclose(a @ out, b, atol=1e-12 * cond * np.abs(b).max())
            low, high = fast_field._extreme_eigenvalues(a, np.empty((k, k)))
            eig = np.linalg.eigvalsh(a)
            np.testing.assert_allclose([low, high], [eig[0], eig[-1]], rtol=0, atol=1e-14 * np.abs(eig).max())
    assert not fast_field._lu_solve(np.array([[1.0, 2.0], [2.0, 4.0]]), np.ones((2, 1)), np.empty((2, 2)), np.empty((2, 1)))
    nan = np.array([[1.0, math.nan], [math.nan, 1.0]])
    out = np.empty((2, 1))
    assert fast_field._lu_solve(nan, np.ones((2, 1)), np.empty((2, 2)), out) and np.isnan(out).all()
    assert all(math.isnan(v) for v in fast_field._extreme_eigenvalues(nan, np.empty((2, 2))))
