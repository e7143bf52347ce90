"""The operator template and the Wasserstein Hessian P^{-1/2} ∇²F P^{-1/2} against dense references (docs/theory.md §7)."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from landscape.cases import orthogonal_teacher_landscape
from landscape.model.measure import ParticleMeasure
from landscape.second_order.operators import DeflatedOperator, DenseOperator, WassersteinHessian
from landscape.second_order.references import dense_hessian, dense_wasserstein_hessian


def _measure(m, k, d, seed, uniform):
    rng = np.random.default_rng(seed)
    p = None if uniform else rng.dirichlet(np.ones(m))
    return ParticleMeasure(rng.standard_normal((m, k)), 0.7 * rng.standard_normal((m, d)), p)


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("m,k,d", [(2, 2, 3), (4, 3, 4), (7, 2, 5)])
def test_wasserstein_hessian_equals_scaled_dense_hessian(m, k, d, uniform):
    """Column by column, the operator is diag(p)^{-1/2} ∇²F diag(p)^{-1/2} (reverse-over-reverse reference)."""
    landscape = orthogonal_teacher_landscape(neurons=k, dim=d)
    mu = _measure(m, k, d, seed=10 * m + k, uniform=uniform)
    op = WassersteinHessian(landscape, mu)
    h = dense_hessian(landscape, mu, reverse=True)
    s = torch.as_tensor(np.repeat(np.asarray(mu.p) ** -0.5, k + d))
    expected = s[:, None] * h * s[None, :]
    torch.testing.assert_close(op.dense(), expected, rtol=0, atol=1e-12 * expected.abs().max())
    assert op.calls == op.size


def test_generalised_eigenproblem():
    """An eigenpair (λ, u) of the operator solves ∇²F ψ = λ P ψ for the field ψ = P^{-1/2} u, unit in L²(µ)."""
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    mu = _measure(4, 2, 3, seed=1, uniform=False)
    lam, vec = torch.linalg.eigh(dense_wasserstein_hessian(landscape, mu))
    op = WassersteinHessian(landscape, mu)
    psi_a, psi_w = op.to_field(vec[:, 0])
    psi = torch.as_tensor(np.concatenate([psi_a, psi_w], axis=1).reshape(-1))
    p_flat = torch.as_tensor(np.repeat(mu.p, 5))
    h = dense_hessian(landscape, mu)
    torch.testing.assert_close(h @ psi, lam[0] * p_flat * psi, rtol=0, atol=1e-12)
    assert abs(float((p_flat * psi * psi).sum()) - 1) < 1e-12
    torch.testing.assert_close(op.from_field(psi_a, psi_w), vec[:, 0], rtol=0, atol=1e-14)


def test_operator_checks_shapes_and_dtypes():
    op = DenseOperator(torch.eye(3))
    with pytest.raises(ValueError, match="shape"):
        op.matvec(torch.zeros(4))
    with pytest.raises(ValueError, match="shape"):
        op.matmat(torch.zeros(3))
    with pytest.raises(ValueError, match="dtype"):
        op.matvec(torch.zeros(3, dtype=torch.float32))
    with pytest.raises(ValueError, match="square"):
        DenseOperator(torch.zeros(2, 3))
    torch.testing.assert_close(op @ torch.ones(3), torch.ones(3))
    torch.testing.assert_close(op @ torch.ones(3, 2), torch.ones(3, 2))


def test_zero_weight_is_refused():
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    mu = ParticleMeasure(np.eye(2), np.eye(3)[:2], np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="positive weights"):
        WassersteinHessian(landscape, mu)


def test_to_scipy_feeds_eigsh():
    """The scipy view works with eigsh, vectors and blocks alike."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    a = q @ np.diag(np.arange(30.0)) @ q.T
    lin = DenseOperator(torch.as_tensor(a)).to_scipy()
    lam = spla.eigsh(lin, k=2, which="SA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(lam), [0.0, 1.0], atol=1e-10)
    np.testing.assert_allclose(lin @ np.ones((30, 2)), a @ np.ones((30, 2)), atol=1e-12)


def test_deflated_operator_moves_the_basis_to_the_shift():
    a = torch.diag(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    q = torch.eye(4)[:, :1]
    dense = DeflatedOperator(DenseOperator(a), q, shift=10.0).dense()
    torch.testing.assert_close(dense, torch.diag(torch.tensor([10.0, 1.0, 2.0, 3.0])))
