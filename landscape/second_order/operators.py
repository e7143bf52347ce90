r"""Symmetric linear operators on flat particle vectors, and the Wasserstein Hessian (docs/theory.md §7).

:class:`LinearOperator` is the template: public :meth:`matvec` / :meth:`matmat` / ``@``
check shapes and dtypes, subclasses implement only ``_matmat`` on a tensor of shape
(n, b), and :meth:`to_scipy` hands the operator to ``scipy.sparse.linalg`` (``eigsh``,
``lobpcg``, ``minres``, …). Every operator counts its column applications in ``calls``.

:class:`WassersteinHessian` is ``P^{-1/2} ∇²F P^{-1/2}`` with ``P = diag(p) ⊗ I_{k+d}``:
its eigenproblem is ``∇²F v = λ P v``, and an eigenvector ``u`` corresponds to the tangent
field ``ψ = P^{-1/2} u`` with ``‖ψ‖_{L²(µ)} = ‖u‖``. Use :meth:`WassersteinHessian.to_field`
and :meth:`WassersteinHessian.from_field` to move between the two.

Example:
    >>> op = WassersteinHessian(landscape, measure)                 # doctest: +SKIP
    >>> scipy.sparse.linalg.eigsh(op.to_scipy(), k=1, which="SA")    # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla
import torch

from ..landscape import AttentionLandscape
from ..model.measure import ParticleMeasure
from .hessian import hessian_vector_product

__all__ = ["LinearOperator", "DenseOperator", "WassersteinHessian", "DeflatedOperator"]


class LinearOperator:
    """A square linear operator on ``R^n`` acting on torch tensors.

    Attributes:
        size: ``n``; dtype, device: those of accepted and returned tensors.
        calls: number of columns applied so far.
    """

    def __init__(self, size: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> None:
        if size < 1:
            raise ValueError(f"an operator needs size ≥ 1, got {size}.")
        self.size = int(size)
        self.dtype = dtype
        self.device = torch.device(device)
        self.calls = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def matmat(self, x: torch.Tensor) -> torch.Tensor:
        """``A X`` for ``X`` of shape (n, b); returns shape (n, b).

        Raises:
            ValueError: on a wrong shape or a dtype other than the operator's.
        """
        x = self._check(x)
        if x.ndim != 2:
            raise ValueError(f"matmat needs shape ({self.size}, b), got shape {tuple(x.shape)}.")
        self.calls += x.shape[1]
        return self._matmat(x)

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for ``x`` of shape (n,); returns shape (n,)."""
        x = self._check(x)
        if x.ndim != 1:
            raise ValueError(f"matvec needs shape ({self.size},), got shape {tuple(x.shape)}.")
        self.calls += 1
        return self._matmat(x[:, None])[:, 0]

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return self.matvec(x) if torch.as_tensor(x).ndim == 1 else self.matmat(x)

    def _check(self, x) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected a torch tensor or numpy array, got {type(x).__name__}.")
        if x.dtype != self.dtype:
            raise ValueError(f"expected dtype {self.dtype}, got {x.dtype}.")
        if x.ndim not in (1, 2) or x.shape[0] != self.size:
            raise ValueError(f"expected shape ({self.size},) or ({self.size}, b), got shape {tuple(x.shape)}.")
        return x.to(self.device)

    def dense(self) -> torch.Tensor:
        """The matrix, shape (n, n), by applying the operator to the identity (n applications)."""
        return self.matmat(torch.eye(self.size, dtype=self.dtype, device=self.device))

    def to_scipy(self) -> spla.LinearOperator:
        """A ``scipy.sparse.linalg.LinearOperator`` on float64 numpy arrays (symmetric: rmatvec = matvec)."""

        def apply(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=np.float64)
            shape = x.shape
            t = torch.as_tensor(x.reshape(self.size, -1), dtype=self.dtype, device=self.device)
            return self.matmat(t).cpu().numpy().astype(np.float64).reshape(shape)

        return spla.LinearOperator(self.shape, matvec=apply, rmatvec=apply, matmat=apply, rmatmat=apply, dtype=np.float64)


class DenseOperator(LinearOperator):
    """A symmetric matrix of shape (n, n) as an operator (references and tests)."""

    def __init__(self, matrix: torch.Tensor | np.ndarray) -> None:
        matrix = torch.as_tensor(matrix)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"a dense operator needs a square matrix, got shape {tuple(matrix.shape)}.")
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix = matrix

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        return self.matrix @ x


class WassersteinHessian(LinearOperator):
    """``P^{-1/2} ∇²F P^{-1/2}`` at ``µ``: the Wasserstein Hessian in the L²(µ) metric.

    Args:
        landscape: the attention landscape.
        measure: ``µ`` with M particles and positive weights ``p`` (M,).
        mode: how Hessian-vector products are taken (:mod:`landscape.second_order.hessian`).

    Attributes:
        hvp: the Euclidean Hessian-vector product (its ``calls`` count HVPs).
        scale: tensor of shape (n,), ``p_i^{-1/2}`` repeated ``k + d`` times.

    Raises:
        ValueError: when the measure does not fit the problem, a weight is zero or the mode is unknown.
    """

    def __init__(self, landscape: AttentionLandscape, measure: ParticleMeasure, mode: str = "reverse") -> None:
        p = np.asarray(measure.p)
        if np.any(p <= 0):
            raise ValueError(
                f"the L²(µ) metric needs positive weights, got min(p) = {p.min():.3g}; drop zero-weight particles first."
            )
        self.hvp = hessian_vector_product(landscape, measure, mode)
        super().__init__(self.hvp.size, landscape.dtype, landscape.device)
        self.landscape = landscape
        self.measure = measure
        self.width = measure.features + measure.dim
        self.scale = torch.as_tensor(np.repeat(p**-0.5, self.width), dtype=self.dtype, device=self.device)

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale[:, None]
        return s * self.hvp(s * x)

    def to_field(self, u: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat vector ``u`` (n,) → tangent field ``ψ = P^{-1/2} u`` as ``(ψ_a (M, k), ψ_w (M, d))``."""
        u = torch.as_tensor(u, dtype=self.dtype, device=self.device)
        psi = (self.scale * u).reshape(self.measure.size, self.width).cpu().numpy()
        return psi[:, : self.measure.features].copy(), psi[:, self.measure.features :].copy()

    def from_field(self, psi_a: np.ndarray, psi_w: np.ndarray) -> torch.Tensor:
        """Tangent field ``(ψ_a (M, k), ψ_w (M, d))`` → flat ``u = P^{1/2} ψ`` of shape (n,)."""
        flat = torch.as_tensor(np.concatenate([psi_a, psi_w], axis=1).reshape(-1), dtype=self.dtype, device=self.device)
        return flat / self.scale


class DeflatedOperator(LinearOperator):
    """``(I − QQᵀ) A (I − QQᵀ) + shift · QQᵀ``: ``A`` with the orthonormal columns of ``Q`` moved to ``shift``.

    When ``span Q`` is invariant under ``A`` (a null space), the spectrum on the complement
    is unchanged and the deflated directions sit at ``shift``, out of the way of the
    smallest eigenvalues.

    Args:
        base: the operator ``A`` (its ``calls`` keep counting HVPs).
        basis: tensor of shape (n, r) with orthonormal columns (r may be 0).
        shift: where the deflated directions go (choose it above the eigenvalues sought).
    """

    def __init__(self, base: LinearOperator, basis: torch.Tensor, shift: float) -> None:
        if basis.ndim != 2 or basis.shape[0] != base.size:
            raise ValueError(f"basis must have shape ({base.size}, r), got shape {tuple(basis.shape)}.")
        super().__init__(base.size, base.dtype, base.device)
        self.base = base
        self.basis = basis.to(dtype=base.dtype, device=base.device)
        self.shift = float(shift)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``(I − QQᵀ) x`` for ``x`` of shape (n,) or (n, b)."""
        return x - self.basis @ (self.basis.T @ x)

    def _matmat(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.base.matmat(self.project(x)))
        return y + self.shift * (self.basis @ (self.basis.T @ x))
