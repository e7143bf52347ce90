r"""The smallest eigenpairs of a symmetric operator by Lanczos (``eigsh``) or LOBPCG, with certificates.

The result is a record (:class:`EigenResult`): eigenvalues, eigenvectors, eigen-residuals
``‖Av − λv‖`` computed afresh with the undeflated operator, the certified intervals
``[λ − r, λ + r]`` (for symmetric ``A`` and unit ``v`` each holds an eigenvalue of ``A``),
iteration and Hessian-vector-product counts, and ``converged``. Non-convergence is data:
``converged`` is False and the partial pairs are returned; only when a solver returns no
pair at all is :class:`EigenNoConvergence` raised, carrying the record.

Deflation: a basis ``Q`` (n, r) of a null space is removed by
:class:`~landscape.second_order.operators.DeflatedOperator` (Lanczos; its directions are moved to a
shift above the sought eigenvalues) or by LOBPCG's own constraint ``Y = Q``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla
import torch

from .operators import DeflatedOperator, LinearOperator

__all__ = ["EigenResult", "EigenNoConvergence", "smallest_eigenpairs", "METHODS"]

METHODS = ("lanczos", "lobpcg", "dense")
#: operators this small are solved densely (as are those where eigsh would need ``count ≥ n − 1``
#: or LOBPCG a block above a fifth of the free dimension).
DENSE_BELOW = 24


@dataclass
class EigenResult:
    """Smallest eigenpairs of a symmetric operator.

    Attributes:
        eigenvalues: array of shape (j,), ascending.
        vectors: tensor of shape (n, j), unit columns.
        residuals: array of shape (j,), ``‖A v − λ v‖`` with the undeflated operator.
        converged: every residual ≤ ``tol · max(|λ|, scale)`` and the solver finished; ``scale``
            is the largest ``|λ|`` found or Rayleigh quotient of four random probes.
        iterations: Lanczos steps (operator applications inside ``eigsh``) or LOBPCG iterations.
        hvp_count: operator columns applied in all (solver, shift estimate and residuals).
        method: ``"lanczos"``, ``"lobpcg"`` or ``"dense"``.
        tol: the relative tolerance asked for.
    """

    eigenvalues: np.ndarray
    vectors: torch.Tensor
    residuals: np.ndarray
    converged: bool
    iterations: int
    hvp_count: int
    method: str
    tol: float

    def intervals(self) -> np.ndarray:
        """Array of shape (j, 2): ``[λ − r, λ + r]``, each certain to contain an eigenvalue."""
        return np.stack([self.eigenvalues - self.residuals, self.eigenvalues + self.residuals], axis=1)

    def to_dict(self) -> dict:
        """JSON-ready summary (no vectors)."""
        return {
            "eigenvalues": self.eigenvalues.tolist(),
            "residuals": self.residuals.tolist(),
            "intervals": self.intervals().tolist(),
            "converged": self.converged,
            "iterations": self.iterations,
            "hvp_count": self.hvp_count,
            "method": self.method,
            "tol": self.tol,
        }


class EigenNoConvergence(RuntimeError):
    """The eigensolver returned no eigenpair; ``result`` holds the counts."""

    def __init__(self, message: str, result: EigenResult) -> None:
        super().__init__(message)
        self.result = result


def smallest_eigenpairs(
    operator: LinearOperator,
    count: int = 1,
    method: str = "lanczos",
    tol: float = 1e-8,
    maxiter: int = 1000,
    deflate: torch.Tensor | None = None,
    seed: int = 0,
) -> EigenResult:
    """The ``count`` smallest eigenpairs of ``operator`` on the complement of ``deflate``.

    Args:
        operator: a symmetric :class:`~landscape.second_order.operators.LinearOperator` of size n.
        count: number of pairs.
        method: ``"lanczos"`` (scipy ``eigsh``, ``which="SA"``), ``"lobpcg"`` or ``"dense"``
            (materialise with n applications and ``eigh``; small problems and references).
        tol: relative tolerance.
        maxiter: iteration cap (ARPACK restarts, or LOBPCG iterations).
        deflate: tensor of shape (n, r) with orthonormal columns spanning an invariant
            subspace to exclude, or None.
        seed: seed of the starting vectors.

    Raises:
        ValueError: on an unknown method, ``count`` outside ``[1, n − r]`` or a bad basis.
        EigenNoConvergence: when the solver returns no pair at all.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    n = operator.size
    basis = torch.zeros(n, 0, dtype=operator.dtype, device=operator.device) if deflate is None else deflate
    if basis.ndim != 2 or basis.shape[0] != n:
        raise ValueError(f"deflate must have shape ({n}, r), got shape {tuple(basis.shape)}.")
    basis = basis.to(dtype=operator.dtype, device=operator.device)
    free = n - basis.shape[1]
    if not 1 <= count <= free:
        raise ValueError(f"count must lie in [1, {free}] (size {n} minus {basis.shape[1]} deflated), got {count}.")
    start_calls = operator.calls
    rng = np.random.default_rng(seed)
    probe = torch.as_tensor(_start(basis, n, 4, rng), dtype=operator.dtype, device=operator.device)
    spread = float(((probe * operator.matmat(probe)).sum(0) / (probe * probe).sum(0)).abs().max())
    too_small = n < DENSE_BELOW or count >= free - 1 or (method == "lobpcg" and free < 5 * (count + 2))
    if method == "dense" or too_small:
        lam, vec, iterations, finished, method = _dense(operator, basis, count)
    elif method == "lanczos":
        lam, vec, iterations, finished = _lanczos(operator, basis, count, tol, maxiter, rng, spread)
    else:
        # LOBPCG's tolerance is absolute on residual norms
        lam, vec, iterations, finished = _lobpcg(operator, basis, count, 0.5 * tol * max(spread, 1e-300), maxiter, rng)
    vectors = torch.as_tensor(vec, dtype=operator.dtype, device=operator.device)
    if vectors.shape[1] == 0:
        empty = EigenResult(np.zeros(0), vectors, np.zeros(0), False, iterations, operator.calls - start_calls, method, tol)
        raise EigenNoConvergence(f"{method} returned no eigenpair within {maxiter} iterations.", empty)
    vectors = vectors / torch.linalg.norm(vectors, dim=0)
    lam_t = torch.as_tensor(lam, dtype=operator.dtype, device=operator.device)
    res = torch.linalg.norm(operator.matmat(vectors) - vectors * lam_t, dim=0).cpu().numpy()
    scale = max(float(np.max(np.abs(lam))), spread, 1e-300)
    converged = finished and bool(np.all(res <= tol * np.maximum(np.abs(lam), scale)))
    return EigenResult(np.asarray(lam, dtype=np.float64), vectors, res, converged, iterations, operator.calls - start_calls, method, tol)


def _dense(operator: LinearOperator, basis: torch.Tensor, count: int):
    shift = 0.0
    matrix = operator.dense()
    matrix = 0.5 * (matrix + matrix.T)
    if basis.shape[1]:
        shift = float(torch.linalg.matrix_norm(matrix, ord=2)) + 1.0
        proj = torch.eye(operator.size, dtype=matrix.dtype, device=matrix.device) - basis @ basis.T
        matrix = proj @ matrix @ proj + shift * (basis @ basis.T)
    lam, vec = torch.linalg.eigh(matrix)
    return lam[:count].cpu().numpy(), vec[:, :count].cpu().numpy(), operator.size, True, "dense"


def _start(basis: torch.Tensor, n: int, columns: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((n, columns))
    q = basis.cpu().numpy()
    return x - q @ (q.T @ x) if q.shape[1] else x


def _lanczos(operator, basis, count, tol, maxiter, rng, spread):
    target = operator
    if basis.shape[1]:
        # the deflated directions go above the bulk: twice the largest Rayleigh quotient of the probes
        target = DeflatedOperator(operator, basis, max(2.0 * spread, 1e-3))
    scipy_op = target.to_scipy()
    before = operator.calls
    v0 = _start(basis, operator.size, 1, rng)[:, 0]
    finished = True
    try:
        lam, vec = spla.eigsh(scipy_op, k=count, which="SA", tol=tol, maxiter=maxiter, v0=v0)
    except spla.ArpackNoConvergence as err:
        lam, vec, finished = err.eigenvalues, err.eigenvectors, False
    order = np.argsort(lam)
    return lam[order], vec[:, order], operator.calls - before, finished


def _lobpcg(operator, basis, count, tol, maxiter, rng):
    block = count + 2
    x = _start(basis, operator.size, block, rng)
    y = basis.cpu().numpy() if basis.shape[1] else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lam, vec, history = spla.lobpcg(
            operator.to_scipy(), x, Y=y, tol=tol, maxiter=maxiter, largest=False, retResidualNormsHistory=True
        )
    finished = not any("not reaching the requested tolerance" in str(w.message) for w in caught)
    order = np.argsort(lam)[:count]
    return lam[order], vec[:, order], max(len(history) - 1, 0), finished  # history holds the start too
