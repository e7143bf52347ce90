"""Hessian-vector products against the dense ``torch.func.hessian`` (docs/theory.md §7)."""

import numpy as np
import pytest
import torch

from landscape.cases import orthogonal_teacher_landscape
from landscape.model.measure import ParticleMeasure
from landscape.second_order.hessian import gradient, hessian_vector_product
from landscape.second_order.references import dense_hessian


def _random_measure(m, k, d, seed, uniform=True):
    rng = np.random.default_rng(seed)
    p = None if uniform else rng.dirichlet(np.ones(m))
    return ParticleMeasure(rng.standard_normal((m, k)), 0.7 * rng.standard_normal((m, d)), p)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
@pytest.mark.parametrize("m,k,d,uniform", [(3, 2, 4, True), (5, 3, 4, False), (8, 3, 5, True)])
def test_hvp_matches_dense_hessian(m, k, d, uniform, mode):
    """∇²F·V equals the dense Hessian times V, batched or single (each mode against the other path)."""
    landscape = orthogonal_teacher_landscape(neurons=k, dim=d)
    mu = _random_measure(m, k, d, seed=m, uniform=uniform)
    h = dense_hessian(landscape, mu, reverse=(mode == "forward"))
    hvp = hessian_vector_product(landscape, mu, mode)
    v = torch.randn(hvp.size, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    scale = h.abs().max()
    torch.testing.assert_close(hvp(v), h @ v, rtol=0, atol=1e-12 * scale)
    torch.testing.assert_close(hvp(v[:, 2]), h @ v[:, 2], rtol=0, atol=1e-12 * scale)
    assert hvp.calls == 5


def test_dense_hessians_agree():
    """torch.func.hessian (forward over reverse) and jacrev∘jacrev give one matrix."""
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    mu = _random_measure(4, 2, 3, seed=5, uniform=False)
    h1, h2 = dense_hessian(landscape, mu), dense_hessian(landscape, mu, reverse=True)
    torch.testing.assert_close(h1, h2, rtol=0, atol=1e-12 * h1.abs().max())


def test_hvp_matches_central_differences_of_the_gradient():
    """An independent reference: (∇F(θ + εv) − ∇F(θ − εv)) / 2ε → ∇²F v as ε² → 0."""
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    mu = _random_measure(3, 2, 3, seed=6, uniform=False)
    objective, theta = landscape.objective(mu)
    v = torch.randn(theta.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    exact = hessian_vector_product(landscape, mu)(v)
    g = torch.func.grad(objective)
    errors = [float(torch.linalg.norm((g(theta + e * v) - g(theta - e * v)) / (2 * e) - exact)) for e in (1e-2, 5e-3)]
    assert errors[1] < errors[0] / 3  # second order: the error falls by ≈ 4 when ε halves
    assert errors[1] < 1e-4 * float(torch.linalg.norm(exact))


@pytest.mark.parametrize("activation,bias", [("relu", False), ("tanh", True)])
def test_hvp_matches_dense_for_other_activations(activation, bias):
    """ReLU (closed-form kernel) and tanh with a bias (Mehler series) differentiate twice correctly."""
    from landscape.landscape import AttentionLandscape
    from landscape.model.activations import get_activation
    from landscape.model.expectations import ExactGaussianExpectation
    from landscape.model.teacher import Teacher

    act = get_activation(activation)
    teacher = Teacher(np.eye(2), 0.8 * np.eye(3)[:2], act)
    landscape = AttentionLandscape(teacher, ExactGaussianExpectation(teacher, act, bias=bias))
    mu = _random_measure(3, 2, 3 + int(bias), seed=7, uniform=False)
    h = dense_hessian(landscape, mu, reverse=True)
    v = torch.randn(h.shape[0], 3, dtype=torch.float64)
    for mode in ("forward", "reverse"):
        torch.testing.assert_close(hessian_vector_product(landscape, mu, mode)(v), h @ v, rtol=0, atol=1e-11 * h.abs().max())


def test_hvp_of_finite_prompt_length_matches_dense():
    """The HVP also differentiates the finite-N loss (A_N with Q_µ taken on a fixed sample)."""
    from landscape.landscape import AttentionLandscape
    from landscape.model.expectations import SampledExpectation

    base = orthogonal_teacher_landscape(neurons=2, dim=3)
    x = np.random.default_rng(0).standard_normal((2000, 3))
    exp = SampledExpectation(base.teacher, base.expectation.activation, x)
    landscape = AttentionLandscape(base.teacher, exp, noise=0.1, prompt_length=20)
    mu = _random_measure(3, 2, 3, seed=2, uniform=False)
    h = dense_hessian(landscape, mu)
    v = torch.randn(h.shape[0], 2, dtype=torch.float64)
    torch.testing.assert_close(hessian_vector_product(landscape, mu)(v), h @ v, rtol=0, atol=1e-11 * h.abs().max())


def test_hvp_works_under_no_grad():
    """Callers inside ``torch.no_grad()`` (e.g. a dynamics loop) get the same product."""
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    mu = _random_measure(3, 2, 3, seed=8)
    v = torch.ones(15, dtype=torch.float64)
    expected = hessian_vector_product(landscape, mu)(v)
    with torch.no_grad():
        hvp = hessian_vector_product(landscape, mu)
        torch.testing.assert_close(hvp(v), expected, rtol=0, atol=0)


def test_gradient_blocks_are_weighted_velocities():
    """∂F/∂θ_i = p_i ∇_θ δL/δµ(θ_i) (docs/theory.md §6)."""
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    mu = _random_measure(4, 2, 3, seed=3, uniform=False)
    a, w, p = mu.tensors()
    g = gradient(landscape, mu).reshape(4, -1)
    torch.testing.assert_close(g, p[:, None] * landscape.velocity(a, w, p), rtol=1e-10, atol=1e-13)


def test_hvp_rejects_wrong_shape():
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    hvp = hessian_vector_product(landscape, _random_measure(2, 2, 3, seed=0))
    with pytest.raises(ValueError, match="shape"):
        hvp(torch.zeros(hvp.size + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        hvp(torch.zeros(hvp.size, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="mode"):
        hessian_vector_product(landscape, _random_measure(2, 2, 3, seed=0), mode="sideways")
