"""The attention landscape: losses, Γ*, first variation, velocity and docs/theory.md §9 answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch
from conftest import (
    dead_neuron_saddle,
    exact_landscape,
    orthogonal_teacher,
    random_measure,
    random_teacher,
    sampled_landscape,
)

from landscape import ParticleMeasure, SingularMomentError
from landscape.model.kernels import erf_kernel

EPS = torch.finfo(torch.float64).eps


def _problems(rng):
    """(name, landscape) pairs covering both backends, N = ∞ and finite N, noise and a bias."""
    teacher = random_teacher(rng, neurons=3, k0=2, d=3)
    x = rng.standard_normal((3000, 3))
    return [
        ("exact-inf", exact_landscape(teacher, noise=0.1)),
        ("exact-N7", exact_landscape(teacher, noise=0.3, prompt_length=7, fourth_samples=4000)),
        ("mc-inf-tanh", sampled_landscape(teacher, x, activation="tanh")),
        ("mc-N3-bias", sampled_landscape(teacher, x, activation="sigmoid", bias=True, noise=0.2, prompt_length=3)),
    ]


def _loss_of_mixture(landscape, measure, theta_a, theta_w, eps):
    a, w, p = measure.tensors()
    a2 = torch.cat([a, torch.as_tensor(theta_a)[None]])
    w2 = torch.cat([w, torch.as_tensor(theta_w)[None]])
    p2 = torch.cat([(1 - eps) * p, torch.tensor([eps])])
    return float(landscape.loss(a2, w2, p2))


@pytest.mark.parametrize("case", range(4))
def test_first_variation_matches_finite_differences_of_mixtures(case, rng):
    """δL/δµ(θ) = d/dε L((1−ε)µ + εδ_θ)|₀ (five-point differences)."""
    name, landscape = _problems(rng)[case]
    bias = int(landscape.bias)
    measure = random_measure(rng, m=4, k=2, d=3 + bias, uniform=(case % 2 == 0))
    probes_a, probes_w = rng.standard_normal((3, 2)), rng.standard_normal((3, 3 + bias))
    a, w, p = measure.tensors()
    fv = landscape.first_variation(a, w, p, torch.tensor(probes_a), torch.tensor(probes_w)).numpy()
    h = 1e-4
    fd = []
    for qa, qw in zip(probes_a, probes_w):
        f = [_loss_of_mixture(landscape, measure, qa, qw, s * h) for s in (-2, -1, 1, 2)]
        fd.append((f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h))  # error O(h⁴)
    np.testing.assert_allclose(fv, fd, rtol=1e-7, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("case", range(4))
def test_raw_first_variation_matches_zero_weight_probe_autograd(case, rng):
    """G(θ) by the moment chain rule equals ∂L/∂ε of a zero-weight probe particle (autograd)."""
    _, landscape = _problems(rng)[case]
    bias = int(landscape.bias)
    measure = random_measure(rng, m=3, k=2, d=3 + bias)
    a, w, p = measure.tensors()
    qa, qw = torch.tensor(rng.standard_normal((2, 2))), torch.tensor(rng.standard_normal((2, 3 + bias)))

    def loss_of_probe_weights(eps):
        return landscape.loss(torch.cat([a, qa]), torch.cat([w, qw]), torch.cat([p, eps]))

    expected = torch.func.grad(loss_of_probe_weights)(torch.zeros(2))
    torch.testing.assert_close(landscape.raw_first_variation(a, w, p, qa, qw), expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("case", range(4))
def test_integral_of_raw_first_variation_vanishes(case, rng):
    """∫ G dµ = 0 at every N: L(cµ) = L(µ) (docs/theory.md §5)."""
    _, landscape = _problems(rng)[case]
    measure = random_measure(rng, m=5, k=2, d=3 + int(landscape.bias), uniform=False)
    a, w, p = measure.tensors()
    g = landscape.raw_first_variation(a, w, p, a, w)
    scale = float(torch.sum(p * g.abs()))
    assert abs(float(torch.sum(p * g))) <= 1e3 * EPS * max(scale, 1.0)


def test_first_variation_closed_form_at_infinite_prompt_length(rng):
    """N = ∞: δL/δµ(a, w) = −aᵀ C ρ(w), ρ(w) = Σ_l κ(w,u_l) c_l − Σ_i p_i κ(w,w_i) Cᵀa_i."""
    teacher = random_teacher(rng, neurons=3, k0=2, d=3)
    landscape = exact_landscape(teacher, noise=0.5)
    measure = random_measure(rng, m=4, k=3, d=3, uniform=False)
    a, w, p = measure.tensors()
    qa, qw = torch.tensor(rng.standard_normal((5, 3))), torch.tensor(rng.standard_normal((5, 3)))
    sigma_mm, sigma_mt, _ = landscape.moments(a, w, p)
    c_mat = torch.linalg.solve(sigma_mm, sigma_mt)
    u, c = torch.tensor(teacher.u), torch.tensor(teacher.c)
    rho = erf_kernel(qw, u) @ c - erf_kernel(qw, w) @ (p[:, None] * a) @ c_mat
    expected = -((qa @ c_mat) * rho).sum(-1)
    torch.testing.assert_close(landscape.first_variation(a, w, p, qa, qw), expected, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("case", range(4))
def test_velocity_at_particles_is_scaled_gradient_of_particle_objective(case, rng):
    """∇_θ δL/δµ(θ_i) = (1/p_i) ∂F/∂θ_i."""
    _, landscape = _problems(rng)[case]
    measure = random_measure(rng, m=4, k=2, d=3 + int(landscape.bias), uniform=False)
    objective, theta = landscape.objective(measure)
    grad = torch.func.grad(objective)(theta).reshape(measure.size, -1)
    a, w, p = measure.tensors()
    torch.testing.assert_close(landscape.velocity(a, w, p), grad / p[:, None], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", range(4))
def test_loss_invariant_under_permutation_and_linear_maps_of_features(case, rng):
    _, landscape = _problems(rng)[case]
    measure = random_measure(rng, m=5, k=2, d=3 + int(landscape.bias), uniform=False)
    b = rng.standard_normal((2, 2)) + 2 * np.eye(2)
    mapped = ParticleMeasure(measure.a @ b.T, measure.w, measure.p)
    permuted = measure.permuted(rng.permutation(measure.size))
    values = [float(landscape.loss(*m.tensors())) for m in (measure, mapped, permuted)]
    cond = np.linalg.cond(b) ** 2 * landscape.conditioning(measure)[1]
    np.testing.assert_allclose(values[1:], values[0], rtol=100 * float(EPS) * cond)


@pytest.mark.parametrize("case", [0, 1, 3])
def test_gamma_star_is_the_minimiser_of_the_attention_loss(case, rng):
    """Γ* from the closed form equals the minimiser that BFGS finds for L(µ, ·)."""
    _, landscape = _problems(rng)[case]
    measure = random_measure(rng, m=4, k=2, d=3 + int(landscape.bias))
    a, w, p = measure.tensors()

    def loss_and_grad(flat):
        gamma = torch.tensor(flat.reshape(2, 2), requires_grad=True)
        value = landscape.loss_with_gamma(a, w, p, gamma)
        value.backward()
        return float(value), gamma.grad.numpy().ravel()

    found = scipy.optimize.minimize(loss_and_grad, np.zeros(4), jac=True, method="BFGS", options={"gtol": 1e-12})
    gamma_star = landscape.gamma_star(a, w, p)
    np.testing.assert_allclose(found.x.reshape(2, 2), gamma_star.numpy(), rtol=1e-5, atol=1e-6)
    assert float(landscape.loss_with_gamma(a, w, p, gamma_star)) == pytest.approx(float(landscape.loss(a, w, p)), abs=1e-13)
    assert found.fun >= float(landscape.loss(a, w, p)) - 1e-13


def test_gamma_star_is_inverse_second_moment_at_infinite_prompt_length(rng):
    teacher = random_teacher(rng, neurons=3, k0=2, d=3)
    landscape = exact_landscape(teacher)
    a, w, p = random_measure(rng, m=4, k=2, d=3).tensors()
    sigma_mm = landscape.moments(a, w, p).sigma_mm
    torch.testing.assert_close(landscape.gamma_star(a, w, p), torch.linalg.inv(sigma_mm), rtol=1e-9, atol=1e-12)


def test_finite_prompt_loss_approaches_infinite_at_rate_one_over_n(rng):
    teacher = random_teacher(rng, neurons=3, k0=2, d=3)
    measure = random_measure(rng, m=4, k=2, d=3)
    a, w, p = measure.tensors()
    l_inf = float(exact_landscape(teacher, noise=0.2).loss(a, w, p))
    scaled = []
    for n in (10**3, 10**4, 10**5, 10**6):
        l_n = float(exact_landscape(teacher, noise=0.2, prompt_length=n, fourth_samples=20000).loss(a, w, p))
        assert l_n > l_inf
        scaled.append(n * (l_n - l_inf))
    # N (L_N − L_∞) = c + O(1/N) once N ≫ ‖K_µ‖/λ_min(Σ_µ°Σ_°µ) (≈ 10³ here): differences shrink tenfold.
    gaps = np.abs(np.diff(scaled))
    assert gaps[1] < 0.2 * gaps[0] and gaps[2] < 0.2 * gaps[1]


def test_dead_neuron_saddle_loss_and_zero_residual():
    """docs/theory.md §9: L_∞ = ½ κ(u_3, u_3) (+ ½τ²), ‖∇δL/δµ‖ = 0."""
    teacher, measure = dead_neuron_saddle(k0=3, d=5, scale=1.3)
    landscape = exact_landscape(teacher, noise=0.2)
    result = landscape.evaluate(measure)
    u3 = torch.tensor(teacher.u[2:3])
    assert result.loss == pytest.approx(0.5 * float(erf_kernel(u3, u3)) + 0.5 * 0.2**2, rel=1e-14)
    assert result.grad_norm < 1e-14
    assert result.loss_star == pytest.approx(0.02)


def test_teacher_is_a_global_minimum_with_zero_loss():
    teacher = orthogonal_teacher(3, 5, scale=0.8)
    result = exact_landscape(teacher).evaluate(ParticleMeasure(teacher.c, teacher.u))
    assert abs(result.loss) < 1e-15 and result.grad_norm < 1e-14 and result.loss_star == 0.0


def test_loss_star_rules(rng):
    teacher = random_teacher(rng, neurons=2, k0=2, d=3)
    measure = random_measure(rng, m=3, k=2, d=3)
    assert exact_landscape(teacher, noise=0.4).loss_star(measure) == pytest.approx(0.08)
    assert exact_landscape(teacher, activation="tanh").loss_star(measure) is None
    assert exact_landscape(teacher, prompt_length=5).loss_star(measure) is None
    assert exact_landscape(teacher, prompt_length=5, loss_star=0.3).loss_star(measure) == 0.3
    small = random_measure(rng, m=1, k=2, d=3)
    assert exact_landscape(teacher).loss_star(small) is None


def test_singular_second_moment_is_refused_with_its_eigenvalue(rng):
    teacher = random_teacher(rng, neurons=2, k0=2, d=3)
    w = rng.standard_normal((1, 3))
    measure = ParticleMeasure(np.array([[1.0, 2.0], [2.0, 4.0]]), np.vstack([w, w]))
    with pytest.raises(SingularMomentError, match="λ_min"):
        exact_landscape(teacher).evaluate(measure)


def test_evaluate_rejects_measures_of_the_wrong_dimension(rng):
    teacher = random_teacher(rng, neurons=2, k0=2, d=3)
    with pytest.raises(ValueError, match="columns"):
        exact_landscape(teacher, bias=True).evaluate(random_measure(rng, m=3, k=2, d=3))


@pytest.mark.parametrize("kwargs", [{"noise": -1.0}, {"prompt_length": 0}, {"prompt_length": 2.5}, {"singular_rtol": 0.0}])
def test_landscape_rejects_bad_parameters(kwargs, rng):
    with pytest.raises(ValueError):
        exact_landscape(random_teacher(rng, 2, 2, 3), **kwargs)


def test_objective_is_a_pure_function_for_torch_func(rng):
    """F works under torch.func.hessian and vmap (used by the second-order tools)."""
    teacher = random_teacher(rng, neurons=2, k0=2, d=3)
    landscape = exact_landscape(teacher, activation="tanh")
    measure = random_measure(rng, m=2, k=2, d=3)
    objective, theta = landscape.objective(measure)
    hess = torch.func.hessian(objective)(theta)
    torch.testing.assert_close(hess, hess.T, rtol=1e-10, atol=1e-12)
    vs = torch.eye(theta.numel())[:3]
    hvps = torch.func.vmap(lambda v: torch.func.jvp(torch.func.grad(objective), (theta,), (v,))[1])(vs)
    torch.testing.assert_close(hvps, hess[:3], rtol=1e-9, atol=1e-11)
    assert math.isfinite(float(objective(theta)))


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("prompt_length", [math.inf, 6])
def test_feature_count_may_differ_from_the_teacher(k, prompt_length, rng):
    """k ≠ k°: first variation against differences, Γ* against the optimiser's value, B-invariance."""
    teacher = random_teacher(rng, neurons=3, k0=2, d=3)
    landscape = exact_landscape(teacher, noise=0.3, prompt_length=prompt_length, fourth_samples=4000)
    measure = random_measure(rng, m=5, k=k, d=3)
    a, w, p = measure.tensors()
    qa, qw = rng.standard_normal(k), rng.standard_normal(3)
    h = 1e-4
    f = [_loss_of_mixture(landscape, measure, qa, qw, s * h) for s in (-2, -1, 1, 2)]
    fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    fv = float(landscape.first_variation(a, w, p, torch.tensor(qa)[None], torch.tensor(qw)[None])[0])
    assert fv == pytest.approx(fd, rel=1e-7, abs=1e-9)
    gamma = landscape.gamma_star(a, w, p)
    assert float(landscape.loss_with_gamma(a, w, p, gamma)) == pytest.approx(float(landscape.loss(a, w, p)), abs=1e-12)
    b = rng.standard_normal((k, k)) + 2 * np.eye(k)
    mapped = ParticleMeasure(measure.a @ b.T, measure.w, measure.p)
    assert float(landscape.loss(*mapped.tensors())) == pytest.approx(float(landscape.loss(a, w, p)), rel=1e-10)
