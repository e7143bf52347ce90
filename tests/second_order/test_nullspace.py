"""Null directions that symmetries explain: counts, orthonormality in L²(µ), and annihilation by H (docs/theory.md §7)."""

import numpy as np
import torch

from landscape.cases import dead_neuron_saddle, orthogonal_teacher_landscape, teacher_measure
from landscape.landscape import AttentionLandscape
from landscape.model.activations import get_activation
from landscape.model.expectations import ExactGaussianExpectation
from landscape.model.measure import ParticleMeasure
from landscape.model.teacher import Teacher
from landscape.second_order.nullspace import coincident_groups, null_space, symmetry_basis, symmetry_fields, symmetry_products
from landscape.second_order.operators import WassersteinHessian
from landscape.second_order.references import dense_spectrum


def _zeros(landscape, mu, tol=1e-8):
    lam, _ = dense_spectrum(landscape, mu)
    return int(np.sum(np.abs(lam) < tol))


def test_gl_k_directions_at_the_teacher():
    """k² GL(k) directions, orthonormal in L²(µ), annihilated by H; with M = k they are all the zeros."""
    landscape = orthogonal_teacher_landscape(3, 5)
    mu = teacher_measure(3, 5, a=np.array([[1.0, 0.2, 0.0], [0.0, 2.0, 0.0], [0.3, 0.0, 0.5]]))
    null = null_space(WassersteinHessian(landscape, mu), tol=1e-8)
    assert (null.null_dim, null.symmetry_dim, null.counts["gl_k"]) == (9, 9, 9)
    torch.testing.assert_close(null.basis.T @ null.basis, torch.eye(9, dtype=torch.float64), rtol=0, atol=1e-12)
    assert null.residual < 1e-12
    assert _zeros(landscape, mu) == 9


def test_relu_homogeneity_adds_one_direction_per_particle():
    """ReLU: v_i = (−a_i, w_i) per particle; at the ReLU teacher the null space is k² + M."""
    act = get_activation("relu")
    teacher = Teacher(np.eye(2), np.eye(4)[:2] + 0.3 * np.eye(4)[2:4], act)
    landscape = AttentionLandscape(teacher, ExactGaussianExpectation(teacher, act))
    mu = ParticleMeasure(np.eye(2), teacher.u)
    fields, counts = symmetry_fields(mu, odd=False, homogeneous=True)
    assert counts == {"gl_k": 4, "homogeneity": 2, "coincident": 0} and fields.shape == (6, 2, 6)
    null = null_space(WassersteinHessian(landscape, mu), tol=1e-8)
    assert null.null_dim == 6 and null.residual < 1e-10
    assert _zeros(landscape, mu) >= 6


def test_coincident_particles_at_a_global_minimum():
    """Splitting a teacher particle in two (same w) adds (m − 1)·k = 3 directions; at L = 0 they are null."""
    landscape = orthogonal_teacher_landscape(3, 5)
    base = teacher_measure(3, 5)
    # particles 0 and 3 share w = 1.5 e_1 and carry 0.7 e_1 and 1.3 e_1: together the teacher's e_1 (up to GL(k))
    a = np.vstack([[0.7, 0.0, 0.0], base.a[1:], [1.3, 0.0, 0.0]])
    mu = ParticleMeasure(a, np.vstack([base.w, base.w[:1]]))
    assert coincident_groups(mu, odd=True) == [[(0, 1), (3, 1)]]
    null = null_space(WassersteinHessian(landscape, mu), tol=1e-8)
    assert null.counts["coincident"] == 3 and null.symmetry_dim == 12 and null.null_dim == 12
    assert _zeros(landscape, mu) >= 12


def test_odd_activation_pairs_w_with_minus_w():
    mu = ParticleMeasure(np.eye(3), np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]))
    assert coincident_groups(mu, odd=True) == [[(0, 1), (1, -1)]]
    assert coincident_groups(mu, odd=False) == []
    _, counts = symmetry_fields(mu, odd=True, homogeneous=False)
    assert counts["coincident"] == 3


def test_coincident_directions_are_not_deflated_where_h_does_not_annihilate_them():
    """Two coincident particles with different a's at a non-critical point: the candidates are kept out."""
    landscape = orthogonal_teacher_landscape(2, 3)
    mu = ParticleMeasure(np.array([[1.0, 0.2], [0.1, 1.0], [0.3, -0.4]]), np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.9, 0.1, 0.0]]))
    q, counts = symmetry_basis(mu, odd=True, homogeneous=False)
    assert counts["coincident"] == 2 and q.shape[1] == 6
    null = null_space(WassersteinHessian(landscape, mu), tol=1e-8)
    assert null.null_dim < null.symmetry_dim
    op = WassersteinHessian(landscape, mu)
    if null.null_dim:
        assert float(torch.linalg.norm(op.matmat(null.basis), dim=0).max()) < 1e-8


def test_symmetry_directions_leave_the_loss_unchanged():
    """Independent check of the candidates: F does not change along any of them (GL(k) and coincident)."""
    landscape = orthogonal_teacher_landscape(2, 3)
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 3))
    mu = ParticleMeasure(rng.standard_normal((4, 2)), np.vstack([w, -w[:1]]), rng.dirichlet(np.ones(4)))
    fields, counts = symmetry_fields(mu, odd=True, homogeneous=False)
    assert counts["coincident"] == 2
    objective, theta = landscape.objective(mu)
    base = float(objective(theta))
    for v in fields:
        step = torch.as_tensor(v.reshape(-1))
        assert abs(float(objective(theta + 1e-2 * step)) - base) < 1e-12


def _cases():
    """(name, landscape, measure): GL(k) only, ReLU homogeneity with a split, ± pairs off criticality, finite N, bias."""
    erf = orthogonal_teacher_landscape(2, 3)
    rng = np.random.default_rng(7)
    w = rng.standard_normal((3, 3))
    relu = get_activation("relu")
    relu_teacher = Teacher(np.eye(2), np.eye(4)[:2] + 0.3 * np.eye(4)[2:4], relu)
    relu_landscape = AttentionLandscape(relu_teacher, ExactGaussianExpectation(relu_teacher, relu))
    split = ParticleMeasure(np.vstack([np.eye(2), [[0.5, 0.1]]]), np.vstack([relu_teacher.u, relu_teacher.u[:1]]))
    pairs = ParticleMeasure(rng.standard_normal((5, 2)), np.vstack([w, -w[:1], w[1:2]]), rng.dirichlet(np.ones(5)))
    finite = AttentionLandscape(erf.teacher, erf.expectation, noise=0.1, prompt_length=30)
    return [
        ("gl_k", orthogonal_teacher_landscape(3, 5), teacher_measure(3, 5, a=np.array([[1.0, 0.2, 0.0], [0.0, 2.0, 0.0], [0.3, 0.0, 0.5]]))),
        ("relu split", relu_landscape, split),
        ("odd pairs, not critical", erf, pairs),
        ("finite N", finite, pairs),
    ]


def test_symmetry_products_equal_hessian_vector_products():
    """The closed forms of ∇²F v (one gradient, one velocity call) against one HVP per field."""
    for name, landscape, mu in _cases():
        act = landscape.expectation.activation
        fields, _ = symmetry_fields(mu, act.odd, act.homogeneous)
        products = symmetry_products(landscape, mu, act.odd, act.homogeneous)
        hvp = WassersteinHessian(landscape, mu).hvp
        reference = hvp(torch.as_tensor(fields.reshape(fields.shape[0], -1).T)).T.reshape(fields.shape).numpy()
        scale = np.abs(reference).max()
        assert np.abs(products - reference).max() <= 1e-12 * max(scale, 1.0), name


def test_closed_form_check_keeps_the_certificates():
    """Same deflated subspace, null_dim and residual (to rounding) as one HVP per candidate, at two HVPs."""
    for name, landscape, mu in _cases():
        op = WassersteinHessian(landscape, mu)
        fast = null_space(op, 1e-8)
        slow = null_space(op, 1e-8, closed_form=False)
        assert fast.hvp_count == 2 and slow.hvp_count == slow.symmetry_dim, name
        assert (fast.null_dim, fast.symmetry_dim) == (slow.null_dim, slow.symmetry_dim), name
        projector = fast.basis @ fast.basis.T - slow.basis @ slow.basis.T
        assert float(projector.abs().max()) < 1e-10, name
        assert abs(fast.residual - slow.residual) < 1e-12 and 0 < fast.check_error < 1e-12, name


def test_a_ridge_fails_the_check_and_falls_back():
    """A ridge breaks GL(k) (docs/theory.md §4.B): the closed form is refused and every column is multiplied."""
    base = orthogonal_teacher_landscape(2, 3)
    landscape = AttentionLandscape(base.teacher, base.expectation, ridge=1e-3)
    saddle = dead_neuron_saddle(2, 3)
    mu = ParticleMeasure(np.repeat(saddle.a, 2, axis=0), np.repeat(saddle.w, 2, axis=0))  # every particle split in two
    op = WassersteinHessian(landscape, mu)
    fast = null_space(op, 1e-8)
    slow = null_space(op, 1e-8, closed_form=False)
    assert fast.hvp_count == 2 + fast.symmetry_dim and fast.check_error == 0.0
    assert (fast.null_dim, fast.residual) == (slow.null_dim, slow.residual)
    assert 0 < fast.null_dim < fast.symmetry_dim
