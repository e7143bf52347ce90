"""Tests of :mod:`landscape.dynamics.krylov` (right-preconditioned GMRES, the deflation
preconditioner and its harvest) and of ``rosenbrock23`` with ``preconditioner = "deflation"``
against ``"none"``: dense references, true residuals, product counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import exact_landscape, orthogonal_teacher

from landscape.dynamics import parse_dynamics
from landscape.dynamics.flow import Layout, ParticleFlow
from landscape.dynamics.krylov import Deflation, gmres, harvest
from landscape.dynamics.rosenbrock import adaptive_rosenbrock_step, rosenbrock23_step
from landscape.model.measure import ParticleMeasure

DTYPE = torch.float64


def _stiff_cluster(n=60, stiff=(-3e5, -2e5, -1.5e5, -1e5), seed=0):
    """A nonsymmetric ``J`` (n, n) = ``Q (D + N) Qᵀ``: a stiff cluster ``stiff`` and a mild
    spread in ``[−3, −0.1]``, ``N`` strictly upper triangular (so ``D`` holds the eigenvalues);
    the stiff eigenvectors span ``Q[:, :len(stiff)]`` (an invariant subspace)."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    diag = np.concatenate([np.array(stiff), -np.linspace(0.1, 3.0, n - len(stiff))])
    upper = np.triu(0.05 * rng.standard_normal((n, n)), 1)
    return q @ (np.diag(diag) + upper) @ q.T, q[:, : len(stiff)]


def test_gmres_reaches_the_true_residual_and_the_dense_solve():
    j, _ = _stiff_cluster()
    w = np.eye(60) - 0.01 * j
    b = np.cos(np.arange(60.0))
    result = gmres(lambda v: w @ v, b, 1e-10, 200)
    assert result.converged
    assert np.linalg.norm(b - w @ result.x) <= 1e-10 * np.linalg.norm(b)
    assert result.residual == pytest.approx(np.linalg.norm(b - w @ result.x) / np.linalg.norm(b), rel=1e-6)
    np.testing.assert_allclose(result.x, np.linalg.solve(w, b), rtol=0, atol=1e-8 * np.linalg.norm(np.linalg.solve(w, b)))
    np.testing.assert_allclose(result.image, result.space @ w.T, rtol=0, atol=1e-10 * np.abs(result.image).max())


def test_gmres_right_preconditioning_keeps_the_unpreconditioned_residual():
    """A poor preconditioner (a random diagonal) still gives ``‖b − W x‖ ≤ rtol ‖b‖``: the test is on ``W``'s residual."""
    j, _ = _stiff_cluster()
    w = np.eye(60) - 0.01 * j
    b = np.sin(np.arange(60.0) + 1.0)
    scale = np.random.default_rng(1).uniform(0.1, 10.0, 60)
    result = gmres(lambda v: w @ v, b, 1e-9, 200, lambda v: scale * v)
    assert result.converged and np.linalg.norm(b - w @ result.x) <= 1e-9 * np.linalg.norm(b)


def test_gmres_out_of_products_is_not_converged():
    j, _ = _stiff_cluster()
    w = np.eye(60) - 0.01 * j
    result = gmres(lambda v: w @ v, np.ones(60), 1e-12, 3)
    assert not result.converged and result.residual > 1e-12
    assert result.products == 3 + 1


def test_deflation_is_exact_on_the_deflated_subspace():
    """With ``J U = U T`` exactly: ``M⁻¹ b = W⁻¹ b`` for ``b ∈ span U`` (a dense solve), and ``W M⁻¹ u = u`` there."""
    j, u = _stiff_cluster()
    basis = np.linalg.qr(u)[0].T
    deflation = Deflation(basis, basis @ j.T, basis @ j @ basis.T)
    gamma = 0.02
    w = np.eye(60) - gamma * j
    inverse = deflation.inverse(gamma)
    for b in np.random.default_rng(2).standard_normal((4, 4)) @ basis:
        np.testing.assert_allclose(inverse(b), np.linalg.solve(w, b), rtol=0, atol=1e-12 * np.linalg.norm(np.linalg.solve(w, b)))
        np.testing.assert_allclose(w @ inverse(b), b, rtol=0, atol=1e-9 * np.linalg.norm(b))
    off = np.random.default_rng(3).standard_normal(60)
    off -= basis.T @ (basis @ off)
    np.testing.assert_allclose(inverse(off), off, rtol=0, atol=1e-14 * np.linalg.norm(off))


def test_harvest_finds_the_stiff_cluster_and_an_exact_compression():
    """Rayleigh–Ritz on a GMRES search space: the largest Ritz values are the stiff
    eigenvalues (dense ``eig``), ``T = Uᵀ J U`` and ``image = J U`` hold, ``U`` is orthonormal;
    merging a second space of the same ``J`` keeps all three."""
    j, _ = _stiff_cluster()
    gamma = 0.02
    w = np.eye(60) - gamma * j
    first = gmres(lambda v: w @ v, np.ones(60), 1e-10, 200)
    deflation = harvest(first.space, (first.space - first.image) / gamma, 4)
    np.testing.assert_allclose(np.sort(np.linalg.eigvals(deflation.compression).real), [-3e5, -2e5, -1.5e5, -1e5], rtol=1e-6)
    second = gmres(lambda v: w @ v, np.arange(60.0), 1e-10, 200, deflation.inverse(gamma))
    merged = harvest(second.space, (second.space - second.image) / gamma, 6, deflation)
    for d in (deflation, merged):
        np.testing.assert_allclose(d.basis @ d.basis.T, np.eye(d.rank), rtol=0, atol=1e-10)
        np.testing.assert_allclose(d.image, d.basis @ j.T, rtol=0, atol=1e-8 * np.abs(j).max())
        np.testing.assert_allclose(d.compression, d.basis @ j @ d.basis.T, rtol=0, atol=1e-8 * np.abs(j).max())
    assert merged.rank == 6
    with pytest.raises(ValueError, match="rank"):
        harvest(first.space, first.image, 0)


def _dense_problem():
    j, _ = _stiff_cluster()
    jt = torch.tensor(j, dtype=DTYPE)
    return (lambda y: jt @ y + torch.sin(y)), jt


def _stiff_step(preconditioner, deflation=None):
    f, jt = _dense_problem()
    y = torch.linspace(-1.0, 1.0, 60, dtype=DTYPE)
    jac = jt + torch.diag(torch.cos(y))
    return rosenbrock23_step(f, lambda v: jac @ v, y, f(y), 0.05, 1e-10, 200, preconditioner, deflation)


def test_preconditioned_step_agrees_and_uses_fewer_products():
    """On a dense stiff-cluster problem the deflated step equals the plain one to the Krylov
    tolerance and takes fewer products (its later solves skip the cluster); a trial that reuses
    the harvest (a rejected step's retry) takes fewer still."""
    plain, deflated = _stiff_step("none"), _stiff_step("deflation")
    assert plain.converged and deflated.converged and plain.deflation is None
    scale = float(torch.linalg.norm(plain.y))
    assert float(torch.linalg.norm(deflated.y - plain.y)) <= 1e-7 * scale
    assert float(torch.linalg.norm(deflated.error - plain.error)) <= 1e-7 * scale
    assert deflated.products < plain.products
    again = _stiff_step("deflation", deflated.deflation)
    assert again.products < deflated.products
    assert float(torch.linalg.norm(again.y - plain.y)) <= 1e-7 * scale


def test_unknown_preconditioner_is_refused():
    with pytest.raises(ValueError, match="preconditioner must be one of"):
        _stiff_step("jacobi")


def test_config_key():
    base = {"integrator": "rosenbrock23", "steps": 3}
    assert parse_dynamics(base).preconditioner == "deflation"
    config = parse_dynamics({**base, "preconditioner": "none"})
    assert config.preconditioner == "none" and parse_dynamics(config.to_table()) == config
    assert "preconditioner" not in parse_dynamics(base).to_table()
    with pytest.raises(ValueError, match=r"\[dynamics\] preconditioner must be one of"):
        parse_dynamics({**base, "preconditioner": "ilu"})
    with pytest.raises(ValueError, match="only used with integrator"):
        parse_dynamics({"integrator": "rk4", "steps": 3, "preconditioner": "none"})


def test_landscape_flow_steps_agree():
    """A real flow (M = 12 erf particles, two features nearly aligned so ``Σ_µµ`` nearly
    collapses, λ_min ≈ 3e-6): deflated and plain steps agree to the Krylov tolerance, both
    certified, and the deflated one takes fewer products (30 against 40 when written)."""
    landscape = exact_landscape(orthogonal_teacher(2, 3, 1.5))
    rng = np.random.default_rng(0)
    a, w = 0.5 * rng.standard_normal((12, 2)), 0.5 * rng.standard_normal((12, 3))
    a[:, 1] = 0.9 * a[:, 0] + 0.03 * rng.standard_normal(12)
    layout = Layout(12, 2, 3, gamma=False)
    flow = ParticleFlow(landscape, layout)
    y = layout.pack(*ParticleMeasure(a, w, np.full(12, 1 / 12)).tensors(), None, 0.0)
    lin = flow.linearize(y)
    plain, deflated = (rosenbrock23_step(flow, lin.jvp, y, lin.value.dy, 0.02, 1e-10, 200, p) for p in ("none", "deflation"))
    assert plain.converged and deflated.converged
    assert float(torch.linalg.norm(deflated.y - plain.y)) <= 1e-8 * float(torch.linalg.norm(plain.y))
    assert float(torch.linalg.norm(deflated.error - plain.error)) <= 1e-6 * float(torch.linalg.norm(plain.error))
    assert deflated.products < plain.products
    mask = layout.error_mask(y)
    steps = [adaptive_rosenbrock_step(flow, lin.jvp, y, lin.value.dy, 0.02, 1e-4, 1e-7, mask, krylov_rtol=1e-10, preconditioner=p)
             for p in ("none", "deflation")]
    assert float(torch.linalg.norm(steps[1].y - steps[0].y)) <= 1e-8 * float(torch.linalg.norm(steps[0].y))
