"""The sampled field (:mod:`landscape.dynamics.sampled_field`, ``engine = "fast"`` on the ``monte_carlo``
backend) against the autograd reference of :class:`ParticleFlow` (docs/theory.md §5–§6): field,
diagnostics, energy and Jacobian-vector products to rounding over activations, prompt lengths,
η, birth–death, bias, noise, ridge and row blocks; where it does not apply, the reference runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landscape import AttentionLandscape, ExactGaussianExpectation, SampledExpectation, get_activation
from landscape.cases import near_teacher_measure, orthogonal_teacher
from landscape.dynamics import sampled_field, simulate
from landscape.dynamics.flow import Layout, ParticleFlow

RTOL = 1e-12
M, K, D = 6, 2, 3


def _flows(activation: str, prompt: float, eta: float, alpha: float, bias: bool = False, ridge: float = 0.0, samples: int = 300):
    """Fast and reference flows of one sampled problem (teacher erf, τ = 0.1) and a random state (Γ off Γ*)."""
    teacher = orthogonal_teacher(K, D, 1.5, "erf")
    x = np.random.default_rng(0).standard_normal((samples, D))
    expectation = SampledExpectation(teacher, get_activation(activation), x, bias=bias)
    landscape = AttentionLandscape(teacher, expectation, noise=0.1, prompt_length=prompt, ridge=ridge)
    layout = Layout(M, K, landscape.input_dim, not math.isinf(eta))
    rng = np.random.default_rng(1)
    a, w = torch.as_tensor(rng.standard_normal((M, K))), torch.as_tensor(rng.standard_normal((M, landscape.input_dim)))
    p = torch.as_tensor(rng.uniform(0.5, 1.5, M))
    gamma = landscape.gamma_star(a, w, p) + 0.1 if layout.gamma else None
    y = layout.pack(a, w, p / p.sum(), gamma, 0.25)
    fast = ParticleFlow(landscape, layout, eta, alpha)
    reference = ParticleFlow(landscape, layout, eta, alpha, engine="reference")
    assert fast.engine == "sampled" and fast.fallback is None and reference.engine == "reference"
    return fast, reference, y


def _assert_close(fast, reference, what: str) -> None:
    fast, reference = np.asarray(fast, dtype=float), np.asarray(reference, dtype=float)
    scale = float(np.abs(reference).max())
    err = float(np.abs(fast - reference).max())
    assert err <= RTOL * scale, f"{what}: error {err:.3e}, scale {scale:.3e}"


CASES = [  # activation, N, η, α, bias, ridge
    ("sigmoid", math.inf, math.inf, 0.0, False, 0.0),
    ("sigmoid", 1000, math.inf, 0.0, False, 0.0),
    ("sigmoid", 20, 3.0, 0.7, False, 0.0),
    ("tanh", 50, math.inf, 0.5, False, 0.0),
    ("tanh", math.inf, 2.0, 0.0, True, 0.0),
    ("relu", 20, 3.0, 0.5, True, 0.0),
    ("relu", math.inf, math.inf, 0.0, False, 0.05),
    ("gelu", math.inf, 2.0, 0.0, True, 0.0),
    ("gelu", 10, math.inf, 0.5, False, 0.05),
    ("erf", 10, math.inf, 0.0, False, 0.0),
    ("erf", 5, 1.5, 0.3, True, 0.05),
]


@pytest.mark.parametrize("activation, prompt, eta, alpha, bias, ridge", CASES)
def test_sampled_field_jvp_and_energy_equal_the_reference(activation, prompt, eta, alpha, bias, ridge, monkeypatch):
    """Every output to rounding; 64 rows per block, so 300 samples run in five blocks, the last one short."""
    monkeypatch.setattr(sampled_field, "BLOCK_ELEMENTS", 64 * M)
    fast, reference, y = _flows(activation, prompt, eta, alpha, bias, ridge)
    f, r = fast.evaluate(y), reference.evaluate(y)
    _assert_close(f.dy, r.dy, "dy")
    _assert_close(f.first_variation, r.first_variation, "first_variation")
    for name in ("energy", "loss", "grad_norm", "rate", "sigma_min", "sigma_max"):
        _assert_close(getattr(f, name), getattr(r, name), name)
    _assert_close(fast.energy(y), reference.energy(y), "energy()")
    lf, lr = fast.linearize(y), reference.linearize(y)
    _assert_close(lf.value.dy, f.dy, "linearize dy")
    rng = np.random.default_rng(5)
    for _ in range(2):  # two products from one linearisation (the saved state is not consumed)
        v = torch.as_tensor(rng.standard_normal(y.shape))
        _assert_close(lf.jvp(v), lr.jvp(v), "jvp")
    assert fast.jacobian_products == reference.jacobian_products == 2


def test_the_jvp_is_the_derivative_of_the_field():
    """Independent of the reference: central differences of the sampled field along v match its JVP."""
    fast, _, y = _flows("sigmoid", 30, 2.0, 0.5)
    v = torch.as_tensor(np.random.default_rng(3).standard_normal(y.shape))
    eps = 1e-5
    numeric = (fast(y + eps * v) - fast(y - eps * v)) / (2 * eps)
    jvp = fast.linearize(y).jvp(v)
    np.testing.assert_allclose(jvp[:-1], numeric[:-1], rtol=0, atol=1e-6 * float(numeric.abs().max()))


def test_a_singular_moment_matrix_and_a_non_finite_state_behave_like_the_reference():
    fast, reference, y = _flows("tanh", math.inf, math.inf, 0.0)
    singular = y.clone()
    fast.layout.unpack(singular)[0].zero_()  # a = 0: Σ_µµ = 0
    for flow in (fast, reference):
        with pytest.raises(torch.linalg.LinAlgError):
            flow.evaluate(singular)
    broken = y.clone()
    broken[3] = math.nan
    for flow in (fast, reference):
        info = flow.evaluate(broken)
        assert not info.finite


def test_the_reference_runs_where_the_sampled_field_does_not_apply():
    teacher = orthogonal_teacher(K, D, 1.5, "erf")
    x = np.random.default_rng(0).standard_normal((64, D))
    with pytest.warns(UserWarning, match="float32"):
        single = AttentionLandscape(teacher, SampledExpectation(teacher, get_activation("erf"), x, dtype=torch.float32))
    flow = ParticleFlow(single, Layout(M, K, D, False))
    assert flow.engine == "reference" and "monte_carlo" in flow.fallback
    assert "float64" in sampled_field.unsupported(single)
    with pytest.raises(ValueError, match="the sampled field does not apply"):
        sampled_field.SampledField(single, M, K, D, False, flow._assemble)
    fast, _, _ = _flows("erf", math.inf, math.inf, 0.0)
    exact = AttentionLandscape(teacher, ExactGaussianExpectation(teacher, get_activation("erf")))
    assert "exact backend has no sampled field" in sampled_field.unsupported(exact)
    assert ParticleFlow(fast.landscape, fast.layout, engine="reference").engine == "reference"


@pytest.mark.parametrize(
    "settings",
    [
        {"time": 0.3, "step_size": 0.05, "integrator": "rk23", "rtol": 1e-6, "atol": 1e-9, "birth_death": {"kind": "wfr", "rate": 0.5}},
        pytest.param(
            {"time": 0.3, "step_size": 0.05, "integrator": "rosenbrock23", "rtol": 1e-5, "atol": 1e-8, "timescale_ratio": 4.0},
            marks=pytest.mark.slow,  # ≈ 15–25 s on the loaded 2-core box (the autograd reference's JVPs)
        ),
    ],
    ids=["rk23-wfr", "rosenbrock23-eta"],
)
def test_a_sampled_run_with_the_fast_engine_follows_the_reference(settings):
    """Whole finite-N trajectories agree to far below the integrator tolerance (the fields agree to rounding)."""
    fast_flow, _, _ = _flows("sigmoid", 200, math.inf, 0.0)
    landscape = fast_flow.landscape
    measure = near_teacher_measure(M, K, D, spread=0.4, seed=1)
    fast = simulate(landscape, measure, settings)
    reference = simulate(landscape, measure, {**settings, "engine": "reference"})
    assert fast.result.completed and reference.result.completed
    assert fast.result.steps == reference.result.steps and fast.result.evaluations == reference.result.evaluations
    assert fast.result.jacobian_products == reference.result.jacobian_products
    for column in ("time", "loss", "energy", "grad_norm", "energy_defect"):
        np.testing.assert_allclose(fast[column], reference[column], rtol=1e-9, atol=1e-12, err_msg=column)
    np.testing.assert_allclose(fast.final["w"], reference.final["w"], rtol=1e-9, atol=1e-12)


def test_a_linearisation_over_the_memory_cap_is_refused_before_allocating(monkeypatch):
    """Φ and σ'(Z) (S × M each) are kept by a linearisation: over ``LANDSCAPE_MAX_MEMORY`` the flow refuses with one
    line naming the sample and particle counts; just above the need it builds."""
    need = 8.0 * (2 * 300 * M + M * D * (D + K))
    monkeypatch.setenv("LANDSCAPE_MAX_MEMORY", str(int(need) - 1))
    with pytest.raises(ValueError, match=rf"sampled engine's linearisation \(S = 300 inputs, M = {M} particles\)"):
        _flows("sigmoid", math.inf, math.inf, 0.0)
    monkeypatch.setenv("LANDSCAPE_MAX_MEMORY", str(int(need) + 1))
    _flows("sigmoid", math.inf, math.inf, 0.0)
