r"""Property-based tests (hypothesis) of the attention landscape, docs/theory.md §3–5.

Random problems: activations erf, relu, tanh, sigmoid, gelu (teacher σ the student's or
erf), the exact (kernel) and the Monte Carlo backend, ``N = ∞`` and finite ``N``, with and
without a bias column; random particle measures with ``M, k, d`` small. Each property is
a theorem about the exact landscape, so it holds on every backend up to rounding:

* ``L`` is invariant under permutations of the particles and under ``a_i ↦ B a_i`` for
  invertible ``B`` (§4, both at ``N = ∞`` and finite ``N``);
* ``L(cµ) = L(µ)`` for unnormalised weights, hence ``Σ_i p_i G(θ_i) = 0`` for the raw first
  variation ``G`` at every ``N`` (§5), and ``G`` is the derivative of ``ε ↦ L(µ + εδ_θ)``;
* ``½τ² ≤ L_∞ ≤ L_N ≤ ½(tr Σ_°° + τ²)`` and ``L_N`` decreases in ``N``: the Gram matrix of
  ``(h_µ, f°)`` is positive semidefinite (so the residual ``E|r_µ|² ≥ 0``), and
  ``K_µ ⪰ Σ_µ°Σ_°µ`` (Cauchy–Schwarz: ``|E[(vᵀh) f]|² ≤ E[(vᵀh)² |f|²]``), so
  ``A_N = Σ_µ°Σ_°µ + (K_µ − Σ_µ°Σ_°µ)/N`` decreases to ``A_∞`` in the Loewner order and
  ``L(µ, Γ)`` at fixed ``Γ`` does too, hence so does its minimum over ``Γ``;
* ``Γ*`` minimises the quadratic ``Γ ↦ L(µ, Γ)`` and ``L(µ, Γ*) = L_N(µ)``;
* ``Σ_µµ`` is symmetric and every exact kernel matrix (student and teacher neurons
  together, biases included) is positive semidefinite — also the truncated Mehler series
  ``Σ_n ρ^n α_n β_n``, a sum of Schur products of PSD matrices;
* the teacher measure itself attains ``L_∞ = ½τ²`` (realizable case).

Tolerances are ``eps(float64)`` times the condition numbers that amplify rounding
(``cond Σ_µµ``, ``cond A_N``, ``cond B``) times the sizes involved, through
:func:`landscape.second_order.settings.tolerance`. Examples whose Σ_µµ or A_N is ill-conditioned are
assumed away (``hypothesis.assume``): there the landscape is undefined (§4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from landscape import (
    AttentionLandscape,
    ExactGaussianExpectation,
    HermiteQuadrature,
    SampledExpectation,
    Teacher,
    gaussian_kernel,
    get_activation,
)
from landscape.second_order.settings import tolerance

ACTIVATIONS = ("erf", "relu", "tanh", "sigmoid", "gelu")
#: a cheaper Mehler rule than the default: the properties hold for any truncation.
QUADRATURE = HermiteQuadrature(order=24, step=0.1)
#: sample sizes (Monte Carlo backend; ``Q_µ`` of the exact backend at finite N).
SAMPLES = 600
#: examples with a larger condition number (Σ_µµ or A_N) are assumed away.
MAX_COND = 1e6
EPS = torch.finfo(torch.float64).eps

PROPERTY = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rounding_tol(cond: float, size: int, scale: float) -> float:
    """Absolute tolerance for a quantity of magnitude ``scale`` computed through a solve with
    condition number ``cond`` from sums of ``size`` terms: ``eps · 16·size · cond · scale``."""
    return tolerance(torch.float64, 1.0, factor=16.0 * size * max(cond, 1.0)) * scale


def test_rounding_tol_scales_with_its_inputs():
    """The helper is the one place tolerances come from; it must honour every argument."""
    base = rounding_tol(1.0, 1, 1.0)
    assert base == pytest.approx(16 * EPS)
    assert rounding_tol(10.0, 1, 1.0) == pytest.approx(10 * base)
    assert rounding_tol(1.0, 3, 1.0) == pytest.approx(3 * base)
    assert rounding_tol(1.0, 1, 5.0) == pytest.approx(5 * base)
    assert rounding_tol(0.1, 1, 1.0) == pytest.approx(base)  # cond < 1 is treated as 1


# ------------------------------------------------------------------ random cases
@dataclass
class Case:
    landscape: AttentionLandscape
    a: torch.Tensor  # (M, k)
    w: torch.Tensor  # (M, d or d + 1)
    p: torch.Tensor  # (M,)
    cond: float  # cond(Σ_µµ), times cond(A_N) at finite N
    scale: float  # ½(tr Σ_°° + τ²) ≥ every loss value
    label: str

    @property
    def size(self) -> int:
        return self.a.shape[0] + self.a.shape[1] + self.w.shape[1]

    def tol(self, extra_cond: float = 1.0) -> float:
        return rounding_tol(self.cond * extra_cond, self.size, self.scale)


def _condition(matrix: torch.Tensor) -> float:
    eig = torch.linalg.eigvalsh(matrix)
    return float(eig[-1] / eig[0]) if eig[0] > 0 else math.inf


@st.composite
def cases(draw, backends=("exact", "monte_carlo"), prompt_lengths=(math.inf, 3, 25), bias=None) -> Case:
    activation = draw(st.sampled_from(ACTIVATIONS))
    teacher_activation = draw(st.sampled_from((activation, "erf")))
    backend = draw(st.sampled_from(backends))
    n = draw(st.sampled_from(prompt_lengths))
    with_bias = draw(st.booleans()) if bias is None else bias
    d = draw(st.integers(2, 4))
    k0 = draw(st.integers(1, 3))
    neurons = draw(st.integers(1, 3))
    k = draw(st.integers(1, 3))
    m = draw(st.integers(k, k + 3))
    noise = draw(st.sampled_from((0.0, 0.1, 0.5)))
    weight_scale = draw(st.sampled_from((0.5, 1.0)))
    uniform = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)

    teacher = Teacher(rng.standard_normal((neurons, k0)), rng.standard_normal((neurons, d)) / math.sqrt(d),
                      teacher_activation)
    act = get_activation(activation)
    if backend == "exact":
        expectation = ExactGaussianExpectation(teacher, act, with_bias, QUADRATURE, SAMPLES, seed % 1000)
    else:
        expectation = SampledExpectation(teacher, act, rng.standard_normal((SAMPLES, d)), with_bias)
    landscape = AttentionLandscape(teacher, expectation, noise=noise, prompt_length=n)
    a = torch.as_tensor(rng.standard_normal((m, k)))
    w = torch.as_tensor(weight_scale * rng.standard_normal((m, d + with_bias)) / math.sqrt(d))
    p = torch.as_tensor(np.full(m, 1.0 / m) if uniform else rng.dirichlet(np.ones(m)))

    sigma_mm, sigma_mt, fourth = landscape.moments(a, w, p)
    cond = _condition(sigma_mm)
    assume(cond < MAX_COND)
    if landscape.finite_prompt:
        cond_a = _condition(landscape._attention_covariance(sigma_mm, sigma_mt, fourth))
        assume(cond_a < MAX_COND)
        cond *= cond_a
    scale = 0.5 * (float(torch.trace(expectation.sigma_tt)) + noise**2)
    assume(scale > 1e-3)  # a teacher whose features vanish tests nothing
    label = f"{activation}/{teacher_activation} {backend} N={n} bias={with_bias} d={d} k°={k0} k={k} M={m}"
    return Case(landscape, a, w, p, cond, scale, label)


def _random_invertible(rng: np.random.Generator, k: int, spread: float = 2.0) -> tuple[torch.Tensor, float]:
    """``B = Q₁ diag(s) Q₂`` with singular values in ``[1/spread, spread]``; returns ``(B, cond B)``."""
    q1, _ = np.linalg.qr(rng.standard_normal((k, k)))
    q2, _ = np.linalg.qr(rng.standard_normal((k, k)))
    s = np.exp(rng.uniform(-math.log(spread), math.log(spread), size=k))
    return torch.as_tensor(q1 @ np.diag(s) @ q2), float(s.max() / s.min())


# ------------------------------------------------------------------- invariances
@PROPERTY
@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_loss_is_invariant_under_particle_permutations(case, seed):
    """µ is a measure: the order in which its atoms are listed cannot matter (docs/theory.md §2)."""
    order = torch.as_tensor(np.random.default_rng(seed).permutation(case.a.shape[0]))
    ls = case.landscape
    assert float(ls.loss(case.a[order], case.w[order], case.p[order])) == pytest.approx(
        float(ls.loss(case.a, case.w, case.p)), abs=case.tol()
    ), case.label


@PROPERTY
@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_loss_is_invariant_under_gl_k(case, seed):
    """``h_µ ↦ B h_µ`` (``a_i ↦ B a_i``) leaves ``L_N`` and ``L_∞`` unchanged (docs/theory.md §4)."""
    b, cond_b = _random_invertible(np.random.default_rng(seed), case.a.shape[1])
    ls = case.landscape
    moved = case.a @ b.T
    tol = case.tol(cond_b**2)  # Σ_µµ ↦ B Σ_µµ Bᵀ: its condition number grows by at most cond(B)²
    assert float(ls.loss(moved, case.w, case.p)) == pytest.approx(float(ls.loss(case.a, case.w, case.p)), abs=tol)
    assert float(ls.loss_inf(moved, case.w, case.p)) == pytest.approx(
        float(ls.loss_inf(case.a, case.w, case.p)), abs=tol
    ), case.label


@PROPERTY
@given(case=cases(), log_c=st.floats(-3.0, 3.0))
def test_loss_is_invariant_under_scaling_the_mass(case, log_c):
    """``L(cµ) = L(µ)`` for ``c > 0`` and unnormalised weights (docs/theory.md §5)."""
    c = 10.0**log_c
    ls = case.landscape
    assert float(ls.loss(case.a, case.w, c * case.p)) == pytest.approx(
        float(ls.loss(case.a, case.w, case.p)), abs=case.tol()
    ), case.label


# ------------------------------------------------------------ first variation
@PROPERTY
@given(case=cases())
def test_raw_first_variation_integrates_to_zero(case):
    """``∫ G dµ = Σ_i p_i G(θ_i) = d/dc L(cµ)|_{c=1} = 0`` at every N (docs/theory.md §5)."""
    g = case.landscape.raw_first_variation(case.a, case.w, case.p, case.a, case.w)
    integral = float((case.p * g).sum())
    magnitude = float((case.p * g.abs()).sum())
    assert abs(integral) <= case.tol() + rounding_tol(case.cond, case.size, magnitude), (case.label, integral)


@PROPERTY
@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_raw_first_variation_is_the_derivative_along_a_dirac(case, seed):
    """``G(θ) = d/dε L(µ + ε δ_θ)|₀`` (docs/theory.md §5).

    The reference appends θ as an extra particle of weight ε and differentiates the whole
    loss in ε by autograd (moments of M + 1 particles, solves, traces), a path independent
    of the chain rule through probe moments that ``raw_first_variation`` takes. Finite
    differences are no good here: the scale of ε is λ_min(Σ_µµ), not p_i.
    """
    rng = np.random.default_rng(seed)
    k, dim = case.a.shape[1], case.w.shape[1]
    qa = torch.as_tensor(rng.standard_normal((2, k)))
    qw = torch.as_tensor(0.7 * rng.standard_normal((2, dim)) / math.sqrt(dim))
    ls = case.landscape
    exact = ls.raw_first_variation(case.a, case.w, case.p, qa, qw)
    for q in range(2):
        weight = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        loss = ls.loss(torch.cat([case.a, qa[q:q + 1]]), torch.cat([case.w, qw[q:q + 1]]), torch.cat([case.p, weight]))
        (reference,) = torch.autograd.grad(loss, weight)
        tol = rounding_tol(case.cond, case.size, abs(float(reference)) + case.scale)
        assert float(exact[q]) == pytest.approx(float(reference), abs=tol), case.label


# --------------------------------------------------------------- inequalities
@PROPERTY
@given(case=cases(prompt_lengths=(3, 25)))
def test_loss_is_ordered_noise_floor_infinite_finite_trivial(case):
    """``½τ² ≤ L_∞ ≤ L_N ≤ L_{N'} ≤ ½(tr Σ_°° + τ²)`` for ``N' < N`` (see the module docstring).

    ``L_N ≥ L_∞`` rests on ``K_µ ⪰ Σ_µ°Σ_°µ``, exact for the Monte Carlo backend (one sample
    for both) and, for the exact backend, true only up to the sampling error of ``Q_µ``:
    examples where the sampled ``K_µ − Σ_µ°Σ_°µ`` is not PSD are assumed away there.
    """
    ls = case.landscape
    sigma_mm, sigma_mt, fourth = ls.moments(case.a, case.w, case.p)
    gap = fourth + ls.noise**2 * sigma_mm - sigma_mt @ sigma_mt.T
    assume(float(torch.linalg.eigvalsh(gap)[0]) >= 0.0)
    tol = case.tol()
    floor = 0.5 * ls.noise**2
    l_inf = float(ls.loss_inf(case.a, case.w, case.p))
    l_n = float(ls.loss(case.a, case.w, case.p))
    shorter = AttentionLandscape(ls.teacher, ls.expectation, noise=ls.noise, prompt_length=max(1, ls.prompt_length // 3))
    l_short = float(shorter.loss(case.a, case.w, case.p))
    cond_short = _condition(shorter._attention_covariance(sigma_mm, sigma_mt, fourth))
    assert floor - tol <= l_inf <= l_n + tol, case.label
    assert l_n <= l_short + tol + rounding_tol(cond_short, case.size, case.scale), case.label
    assert l_short <= case.scale + tol + rounding_tol(cond_short, case.size, case.scale), case.label


@PROPERTY
@given(case=cases(backends=("monte_carlo",), prompt_lengths=(5,)))
def test_fourth_moment_dominates_the_signal_covariance(case):
    """``K_µ ⪰ Σ_µ°Σ_°µ`` on a sample (Cauchy–Schwarz), the reason ``L_N ≥ L_∞``.

    Checked against an independent computation: the features ``h_µ`` on the very sample,
    and the inequality ``|E[(vᵀh) f]|² ≤ E[(vᵀh)²|f|²]`` for the extreme eigenvector ``v``.
    """
    ls = case.landscape
    sigma_mm, sigma_mt, fourth = ls.moments(case.a, case.w, case.p)
    gap = fourth + ls.noise**2 * sigma_mm - sigma_mt @ sigma_mt.T
    eig, vec = torch.linalg.eigh(gap)
    norm = float(torch.linalg.matrix_norm(fourth + ls.noise**2 * sigma_mm, ord=2))
    assert float(eig[0]) >= -rounding_tol(1.0, SAMPLES, norm), case.label
    exp = ls.expectation
    h = exp.features(case.a, case.w, case.p, exp._x)
    v = vec[:, 0]
    proj = h @ v
    lhs = ((proj[:, None] * exp._f).mean(0) ** 2).sum()
    rhs = (proj**2 * (exp._f_sq + ls.noise**2)).mean()
    assert float(lhs) <= float(rhs) + rounding_tol(1.0, SAMPLES, float(rhs)), case.label


@PROPERTY
@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_gamma_star_minimises_the_attention_loss(case, seed):
    """``L(µ, Γ*) = L_N(µ) ≤ L(µ, Γ* + Δ)`` for every ``Δ`` (``Γ ↦ L`` is a convex quadratic)."""
    ls = case.landscape
    gamma = ls.gamma_star(case.a, case.w, case.p)
    best = float(ls.loss(case.a, case.w, case.p))
    norm = float(torch.linalg.matrix_norm(gamma, ord=2))
    tol = case.tol(1.0 + norm)
    assert float(ls.loss_with_gamma(case.a, case.w, case.p, gamma)) == pytest.approx(best, abs=tol), case.label
    rng = np.random.default_rng(seed)
    for step in (1e-3, 1e-1, 10.0):
        delta = torch.as_tensor(step * (1.0 + norm) * rng.standard_normal(gamma.shape))
        assert float(ls.loss_with_gamma(case.a, case.w, case.p, gamma + delta)) >= best - tol, case.label


# ------------------------------------------------------- moments and kernels
@PROPERTY
@given(case=cases(prompt_lengths=(math.inf, 5)))
def test_second_moments_are_symmetric(case):
    """``Σ_µµ = E[h hᵀ]`` and ``Q_µ = E[|f°|² h hᵀ]`` are symmetric (to rounding)."""
    sigma_mm, _, fourth = case.landscape.moments(case.a, case.w, case.p)
    for matrix in (sigma_mm, fourth) if fourth is not None else (sigma_mm,):
        size = float(torch.linalg.matrix_norm(matrix, ord=2))
        assert float((matrix - matrix.T).abs().max()) <= rounding_tol(1.0, SAMPLES, size), case.label


@st.composite
def neuron_sets(draw):
    activation = draw(st.sampled_from(ACTIVATIONS))
    with_bias = draw(st.booleans())
    d = draw(st.integers(1, 4))
    m1, m2 = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    u = torch.as_tensor(rng.standard_normal((m1, d)) / math.sqrt(d))
    v = torch.as_tensor(rng.standard_normal((m2, d)) / math.sqrt(d))
    if draw(st.booleans()):  # coincident and parallel neurons, where closed forms are delicate
        v[0] = u[0]
        if m2 > 1:
            v[1] = -2.0 * u[0]
    b1 = torch.as_tensor(0.5 * rng.standard_normal(m1)) if with_bias else None
    b2 = torch.as_tensor(0.5 * rng.standard_normal(m2)) if with_bias else None
    return get_activation(activation), u, b1, v, b2


@PROPERTY
@given(sets=neuron_sets())
def test_exact_kernel_is_symmetric(sets):
    """``κ(u, v) = κ(v, u)``: ``K(U, V) = K(V, U)ᵀ``."""
    act, u, b1, v, b2 = sets
    k_uv = gaussian_kernel(act, u, b1, act, v, b2, QUADRATURE)
    k_vu = gaussian_kernel(act, v, b2, act, u, b1, QUADRATURE)
    size = float(k_uv.abs().max()) + 1.0
    assert float((k_uv - k_vu.T).abs().max()) <= rounding_tol(1.0, QUADRATURE.order, size)


@PROPERTY
@given(sets=neuron_sets())
def test_exact_kernel_gram_matrix_is_positive_semidefinite(sets):
    """``K_ij = E[σ(w_i·x + b_i) σ(w_j·x + b_j)]`` over ``[U; V]`` is PSD (a Gram matrix).

    For the Mehler series the truncated sum is itself PSD, so only rounding can break it.
    """
    act, u, b1, v, b2 = sets
    w = torch.cat([u, v])
    b = torch.cat([b1, b2]) if b1 is not None else None
    gram = gaussian_kernel(act, w, b, act, w, b, QUADRATURE)
    eig = torch.linalg.eigvalsh(0.5 * (gram + gram.T))
    assert float(eig[0]) >= -rounding_tol(1.0, QUADRATURE.order * w.shape[0], float(eig[-1]) + 1.0)


@PROPERTY
@given(activation=st.sampled_from(ACTIVATIONS), d=st.integers(2, 4), k0=st.integers(1, 3),
       noise=st.sampled_from((0.0, 0.2)), seed=st.integers(0, 2**32 - 1))
def test_teacher_measure_attains_the_noise_floor(activation, d, k0, noise, seed):
    """Realizable, ``N = ∞``: the teacher itself (``a_l = L c_l``, ``w_l = u_l``, ``p = 1/L``)
    has ``h_µ = f°``, so ``L_∞ = L* = ½τ²`` (docs/theory.md §4)."""
    rng = np.random.default_rng(seed)
    neurons = k0 + int(rng.integers(0, 2))
    c, u = rng.standard_normal((neurons, k0)), rng.standard_normal((neurons, d)) / math.sqrt(d)
    teacher = Teacher(c, u, activation)
    ls = AttentionLandscape(teacher, ExactGaussianExpectation(teacher, get_activation(activation), False, QUADRATURE),
                            noise=noise)
    a, w, p = torch.as_tensor(neurons * c), torch.as_tensor(u), torch.full((neurons,), 1.0 / neurons)
    cond = _condition(ls.moments(a, w, p).sigma_mm)
    assume(cond < MAX_COND)
    scale = 0.5 * (float(torch.trace(ls.expectation.sigma_tt)) + noise**2)
    loss = float(ls.loss(a, w, p))
    assert loss == pytest.approx(0.5 * noise**2, abs=rounding_tol(cond, neurons + k0 + d, scale))
    assert ls.loss_star(_measure(a, w, p)) == pytest.approx(0.5 * noise**2)


def _measure(a, w, p):
    from landscape import ParticleMeasure

    return ParticleMeasure(a.numpy(), w.numpy(), p.numpy())
