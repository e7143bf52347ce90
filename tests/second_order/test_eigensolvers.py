"""Lanczos and LOBPCG on operators with known spectra and on docs/theory.md §9, checked by residuals."""

import numpy as np
import pytest
import torch

from landscape.cases import dead_neuron_saddle, orthogonal_teacher_landscape, teacher_measure
from landscape.second_order.eigensolvers import EigenNoConvergence, smallest_eigenpairs
from landscape.second_order.nullspace import null_space
from landscape.second_order.operators import DenseOperator, WassersteinHessian
from landscape.second_order.references import dense_spectrum


def _known(spectrum, seed=0):
    """A symmetric matrix with the given eigenvalues in a random orthonormal basis, and that basis."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(spectrum), len(spectrum))))
    return DenseOperator(torch.as_tensor(q @ np.diag(spectrum) @ q.T)), q


@pytest.mark.parametrize("method", ["lanczos", "lobpcg", "dense"])
def test_smallest_eigenpairs_of_a_known_spectrum(method):
    spectrum = np.concatenate([[-2.0, -0.5, 0.3], np.linspace(1.0, 5.0, 77)])
    op, q = _known(spectrum)
    result = smallest_eigenpairs(op, count=3, method=method, tol=1e-10)
    np.testing.assert_allclose(result.eigenvalues, spectrum[:3], atol=1e-9)
    assert result.converged and result.method == method
    # eigenvectors: up to sign, the known ones; residuals recomputed and small
    overlap = np.abs(np.sum(q[:, :3] * result.vectors.numpy(), axis=0))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-6)
    assert np.all(result.residuals < 1e-8)
    lo, hi = result.intervals()[0]
    assert lo <= -2.0 <= hi
    assert result.hvp_count >= result.iterations > 0


@pytest.mark.parametrize("method", ["lanczos", "lobpcg"])
def test_deflation_removes_a_null_space(method):
    """With five zero eigenvalues deflated, the smallest pair is the first nonzero one."""
    spectrum = np.concatenate([np.zeros(5), np.linspace(0.1, 3.0, 55)])
    op, q = _known(spectrum, seed=3)
    result = smallest_eigenpairs(op, 2, method, tol=1e-10, deflate=torch.as_tensor(q[:, :5]))
    np.testing.assert_allclose(result.eigenvalues, spectrum[5:7], atol=1e-9)
    assert result.converged


def test_non_convergence_is_reported_as_data():
    spectrum = np.linspace(0.0, 1.0, 150) ** 3  # clustered near 0: slow for Lanczos
    op, _ = _known(spectrum, seed=1)
    result = smallest_eigenpairs(op, 1, "lobpcg", tol=1e-14, maxiter=2)
    assert not result.converged and result.iterations <= 2 + 2  # scipy may add a final Rayleigh-Ritz
    try:
        result = smallest_eigenpairs(op, 1, "lanczos", tol=1e-14, maxiter=1)
        assert not result.converged
    except EigenNoConvergence as err:  # ARPACK may return no pair at all
        assert err.result.converged is False


def test_bad_arguments():
    op, _ = _known(np.arange(30.0))
    with pytest.raises(ValueError, match="method"):
        smallest_eigenpairs(op, 1, "power")
    with pytest.raises(ValueError, match="count"):
        smallest_eigenpairs(op, 31)
    with pytest.raises(ValueError, match="deflate"):
        smallest_eigenpairs(op, 1, deflate=torch.zeros(5, 1, dtype=torch.float64))


@pytest.mark.parametrize("method", ["lanczos", "lobpcg"])
def test_section9_dead_neuron_saddle_has_exactly_one_negative_eigenvalue(method):
    """docs/theory.md §9: the dead-neuron saddle (k = k° = 3, d = 6): one negative eigenvalue, ψ0 matches eigh."""
    landscape = orthogonal_teacher_landscape(3, 6)
    mu = dead_neuron_saddle(3, 6)
    lam, vec = dense_spectrum(landscape, mu)
    assert np.sum(lam < -1e-8) == 1
    op = WassersteinHessian(landscape, mu)
    null = null_space(op, 1e-8)
    result = smallest_eigenpairs(op, 2, method, tol=1e-10, deflate=null.basis)
    assert result.eigenvalues[0] == pytest.approx(lam[0], abs=1e-9)
    assert result.eigenvalues[1] > -1e-8  # the second is not negative
    assert abs(float(np.dot(vec[:, 0], result.vectors[:, 0].numpy()))) == pytest.approx(1.0, abs=1e-7)
    # ψ0 turns the dead neuron's w towards the missing teacher direction e_3
    psi_a, psi_w = op.to_field(result.vectors[:, 0])
    assert abs(psi_w[2, 2]) > 0.9 * np.linalg.norm(np.concatenate([psi_a, psi_w], axis=1))


def test_section9_teacher_has_no_negative_and_k_squared_zero_eigenvalues():
    """docs/theory.md §9: at the teacher (M = k = 3, erf) exactly k² = 9 zero eigenvalues, none negative."""
    landscape = orthogonal_teacher_landscape(3, 6)
    lam, _ = dense_spectrum(landscape, teacher_measure(3, 6))
    assert np.sum(np.abs(lam) < 1e-8) == 9 and lam.min() > -1e-8
    op = WassersteinHessian(landscape, teacher_measure(3, 6))
    null = null_space(op, 1e-8)
    assert null.null_dim == 9
    result = smallest_eigenpairs(op, 1, "lanczos", tol=1e-10, deflate=null.basis)
    assert result.eigenvalues[0] == pytest.approx(lam[9], abs=1e-9) and lam[9] > 1e-3
