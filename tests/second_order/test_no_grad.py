"""The toolkit's products are right inside ``torch.no_grad()`` (issue 14).

curvlinops' Hessian product, ``jvp(jacrev(·))`` run under ``no_grad``, is wrong on this
objective (the backward of ``torch.linalg.solve`` then loses its forward-mode tangent,
benchmarks/second_order.py). These tests pin down that this toolkit's own Hessian-vector
products (both modes), the flow's Jacobian-vector product and λ_min do not depend on the
caller's grad mode: each is computed inside and outside ``no_grad`` and against a dense
Hessian from ``torch.autograd.functional.hessian`` in float64 (docs/theory.md §6.C, §7).
"""

import math

import numpy as np
import pytest
import torch

from landscape.cases import dead_neuron_saddle, orthogonal_teacher_landscape
from landscape.dynamics.flow import Layout, ParticleFlow
from landscape.model.measure import ParticleMeasure
from landscape.second_order.classify import hessian_report
from landscape.second_order.hessian import HVP_MODES, hessian_vector_product
from landscape.second_order.operators import WassersteinHessian
from landscape.second_order.settings import AnalysisSettings


def _problem():
    """The §9 saddle (k° = 2, d = 3) with particle 0 split in two and uneven weights: GL(k), coincident, λ_min < 0."""
    landscape = orthogonal_teacher_landscape(2, 3)
    saddle = dead_neuron_saddle(2, 3)
    measure = ParticleMeasure(saddle.a[[0, 0, 1]] * np.array([[0.4], [0.6], [1.0]]), saddle.w[[0, 0, 1]], np.array([0.3, 0.2, 0.5]))
    objective, theta = landscape.objective(measure)
    dense = torch.autograd.functional.hessian(objective, theta)
    return landscape, measure, dense


@pytest.mark.parametrize("mode", HVP_MODES)
def test_hessian_vector_product_under_no_grad(mode):
    landscape, measure, dense = _problem()
    v = torch.as_tensor(np.random.default_rng(0).standard_normal((dense.shape[0], 3)))
    outside = hessian_vector_product(landscape, measure, mode)(v)
    with torch.no_grad():
        inside = hessian_vector_product(landscape, measure, mode)(v)
    torch.testing.assert_close(inside, outside, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(inside, dense @ v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("eta, alpha", [(math.inf, 0.0), (3.0, 1.5)])
def test_flow_jacobian_vector_product_under_no_grad(eta, alpha):
    """``linearize(y).jvp`` inside and outside ``no_grad``; its (a, w) block is ``−P⁻¹∇²F`` (η = ∞, α = 0)."""
    landscape, measure, dense = _problem()
    m, k, d = measure.size, measure.features, measure.dim
    layout = Layout(m, k, d, not math.isinf(eta))
    a, w, p = measure.tensors()
    gamma = landscape.gamma_star(a, w, p) if layout.gamma else None
    flow = ParticleFlow(landscape, layout, eta, alpha)
    y = layout.pack(a, w, p, gamma, 0.0)
    tangents = torch.as_tensor(np.random.default_rng(1).standard_normal((layout.size, 3)))
    outside = torch.stack([flow.linearize(y).jvp(t) for t in tangents.T], dim=1)
    with torch.no_grad():
        linear = flow.linearize(y)
        inside = torch.stack([linear.jvp(t) for t in tangents.T], dim=1)
    torch.testing.assert_close(inside, outside, rtol=1e-14, atol=1e-14)
    if math.isinf(eta) and alpha == 0.0:
        theta_rows = torch.cat([torch.arange(i * (k + d), (i + 1) * (k + d)) for i in range(m)])
        va, vw, _, _, _ = layout.unpack(tangents[:, 0].clone())
        flat = torch.cat([va, vw], dim=1).reshape(-1)
        da, dw, _, _, _ = layout.unpack(inside[:, 0].clone())
        expected = -(dense @ flat) / p.repeat_interleave(k + d)
        torch.testing.assert_close(torch.cat([da, dw], dim=1).reshape(-1)[theta_rows], expected, rtol=1e-10, atol=1e-12)


def test_lambda_min_under_no_grad():
    """The whole Hessian report (null space, Lanczos, zero count) inside ``no_grad`` equals the one outside and dense ``eigh``."""
    landscape, measure, dense = _problem()
    settings = AnalysisSettings.defaults(torch.float64)
    outside = hessian_report(WassersteinHessian(landscape, measure), settings)
    with torch.no_grad():
        inside = hessian_report(WassersteinHessian(landscape, measure), settings)
    scale = torch.as_tensor(np.repeat(measure.p**-0.5, measure.features + measure.dim))
    exact = float(torch.linalg.eigvalsh(scale[:, None] * dense * scale[None, :])[0])
    assert exact < -1e-3  # a strict saddle: the smallest eigenvalue is not a null direction
    assert inside.null.null_dim == outside.null.null_dim > 0
    assert abs(inside.lambda_min - outside.lambda_min) <= 1e-12 and abs(inside.lambda_min - exact) <= 1e-10
    assert inside.eigen.converged and inside.eigen.residuals[0] < 1e-8
