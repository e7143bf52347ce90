r"""GMRES on products with a right preconditioner, and the deflation preconditioner of ``rosenbrock23``.

``rosenbrock23`` (docs/theory.md §6.D) solves ``W x = b`` with ``W = I − γ J``, ``γ = h d``,
knowing ``J`` only through products. Where ``Σ_µµ`` nearly collapses, ``J`` has a stiff
cluster of eigenvalues of size ``≈ 1/λ_min(Σ_µµ)``: ``W``'s spectrum is a cloud near 1 plus
eigenvalues far out, and GMRES spends iterations on finding them in every solve.

:class:`Deflation` moves the largest to 1 (docs/theory.md §6.H). Given ``U`` (n, k) with
orthonormal columns spanning an (approximately) invariant subspace of ``J`` (stored as
``k`` rows) and ``T = Uᵀ J U`` (k, k)::

    M⁻¹(γ) = I − U Uᵀ + U (I − γ T)⁻¹ Uᵀ.

When ``J U = U T`` exactly, ``W M⁻¹ u = u`` on ``span U`` (the outliers move to 1) and
``M⁻¹ b = W⁻¹ b`` for ``b ∈ span U``. ``T`` does not depend on ``γ``, so one ``U``, ``T``
serves every step size. ``U`` and ``T`` are harvested, without products, from the search
spaces of earlier solves with the same ``J``: :func:`gmres` returns its search directions
``Z`` and their images ``J Z`` (known from the Arnoldi relation), and :func:`harvest` does a
Rayleigh–Ritz step there, keeping the whole space or, past a rank, the Schur vectors of the
largest Ritz values.

:func:`gmres` is right-preconditioned (``W M⁻¹ z = b``, ``x = M⁻¹ z``), so its residual is
``W``'s own: a solve is converged when the true residual ``‖b − W x‖ ≤ rtol ‖b‖``, computed
with one more product, whatever the preconditioner. (``scipy.sparse.linalg.gmres``, used
before, returns neither its search directions nor their images, which the harvest needs, and
its ``M`` changes the residual that its stopping test sees; hence this short implementation,
tested against dense solves in tests/dynamics/test_dynamics_krylov.py.)

Example:
    >>> import numpy as np
    >>> J = np.diag([-1e6, -2e5, -1.0, -0.5])          # two stiff modes
    >>> gamma, b = 0.1, np.ones(4)
    >>> plain = gmres(lambda v: v - gamma * (J @ v), b, 1e-10, 50)
    >>> defl = harvest(plain.space, (plain.space - plain.image) / gamma, 2)
    >>> again = gmres(lambda v: v - gamma * (J @ v), b, 1e-10, 50, defl.inverse(gamma))
    >>> plain.products, again.products                 # 4 distinct eigenvalues, then 3 (two moved to 1); + 1 check
    (5, 4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.linalg

__all__ = ["KrylovSolve", "Deflation", "gmres", "harvest"]

Operator = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class KrylovSolve:
    """The result of :func:`gmres` on ``A x = b``.

    Attributes:
        x: the solution, shape (n,).
        converged: whether the true residual ``‖b − A x‖ ≤ rtol ‖b‖``.
        products: products with ``A`` (the Arnoldi steps and one true residual per cycle).
        residual: the true relative residual ``‖b − A x‖ / ‖b‖``.
        space: the search directions ``Z = M⁻¹ V`` of every cycle, one per row, shape (m, n).
        image: ``A Z``, row by row, shape (m, n) (from the Arnoldi relation ``A Z = V H̄``: no products).
    """

    x: np.ndarray
    converged: bool
    products: int
    residual: float
    space: np.ndarray
    image: np.ndarray


def gmres(apply: Operator, b: np.ndarray, rtol: float, maxiter: int, precondition: Operator | None = None) -> KrylovSolve:
    """Right-preconditioned restarted GMRES from ``x = 0``, to ``‖b − A x‖ ≤ rtol ‖b‖``.

    Each cycle runs Arnoldi (classical Gram–Schmidt, twice) on ``A M⁻¹`` until the GMRES
    residual estimate reaches the tolerance, then checks the true residual with one product;
    if the check fails (rounding) the next cycle starts from the true residual. At most
    ``maxiter`` Arnoldi products in all.

    Args:
        apply: ``v ↦ A v`` on arrays of shape (n,); b: the right-hand side (n,).
        rtol: the relative residual to reach; maxiter: Arnoldi products allowed.
        precondition: ``v ↦ M⁻¹ v``, or None (``M = I``).
    """
    n = b.size
    norm_b = float(np.linalg.norm(b))
    target = rtol * norm_b
    x = np.zeros(n)
    spaces, images = [np.empty((0, n))], [np.empty((0, n))]
    r, residual, products, budget = b.copy(), norm_b, 0, maxiter
    while residual > target and budget > 0:
        size = min(budget, n)
        basis = np.zeros((size + 1, n))
        space = np.empty((size, n))
        hessenberg = np.zeros((size + 1, size))
        rotated = np.zeros((size + 1, size))
        cosines, sines = np.zeros(size), np.zeros(size)
        g = np.zeros(size + 1)
        g[0] = residual
        basis[0] = r / residual
        m = 0
        for j in range(size):
            space[j] = basis[j] if precondition is None else precondition(basis[j])
            w = apply(space[j])
            products, budget, m = products + 1, budget - 1, j + 1
            for _ in range(2):
                c = basis[: j + 1] @ w
                w = w - c @ basis[: j + 1]
                hessenberg[: j + 1, j] += c
            hessenberg[j + 1, j] = float(np.linalg.norm(w))
            breakdown = hessenberg[j + 1, j] <= 1e-14 * float(np.linalg.norm(hessenberg[: j + 2, j]))
            if not breakdown:
                basis[j + 1] = w / hessenberg[j + 1, j]
            column = hessenberg[: j + 2, j].copy()
            for i in range(j):
                column[i], column[i + 1] = cosines[i] * column[i] + sines[i] * column[i + 1], cosines[i] * column[i + 1] - sines[i] * column[i]
            radius = float(np.hypot(column[j], column[j + 1]))
            cosines[j], sines[j] = column[j] / radius, column[j + 1] / radius
            rotated[: j + 1, j] = column[: j + 1]
            rotated[j, j] = radius
            g[j], g[j + 1] = cosines[j] * g[j], -sines[j] * g[j]
            if abs(g[j + 1]) <= target or breakdown:
                break
        x = x + scipy.linalg.solve_triangular(rotated[:m, :m], g[:m]) @ space[:m]
        r = b - apply(x)
        products += 1
        residual = float(np.linalg.norm(r))
        spaces.append(space[:m])
        images.append(hessenberg[: m + 1, :m].T @ basis[: m + 1])
    return KrylovSolve(x, residual <= target, products, residual / norm_b if norm_b else 0.0, np.vstack(spaces), np.vstack(images))


@dataclass(frozen=True)
class Deflation:
    """The deflation preconditioner of ``W = I − γ J`` (module docstring, docs/theory.md §6.H).

    Attributes:
        basis: ``U``, one orthonormal vector per row, shape (k, n) (a harvested search space,
            or the real Schur vectors of its Ritz values of largest modulus).
        image: ``J U``, row by row, shape (k, n), for merging with later search spaces of the same ``J``.
        compression: ``T = Uᵀ J U``, shape (k, k).
    """

    basis: np.ndarray
    image: np.ndarray
    compression: np.ndarray

    @property
    def rank(self) -> int:
        return self.basis.shape[0]

    def inverse(self, gamma: float) -> Operator | None:
        """``v ↦ M⁻¹(γ) v = v + U ((I − γ T)⁻¹ − I) Uᵀ v`` on arrays of shape (n,); None when
        ``I − γ T`` is numerically singular (then ``W`` is too, on ``span U``)."""
        small = np.eye(self.rank) - gamma * self.compression
        if np.linalg.cond(small) > 1e12:
            return None
        correction = np.linalg.inv(small) - np.eye(self.rank)
        basis = self.basis

        def apply(v: np.ndarray) -> np.ndarray:
            return v + (correction @ (basis @ v)) @ basis

        return apply


def harvest(space: np.ndarray, image: np.ndarray, rank: int, previous: Deflation | None = None) -> Deflation:
    """Rayleigh–Ritz on ``span [U_prev, Z]`` as a :class:`Deflation` of at most ``rank`` vectors.

    ``Z`` is orthogonalised against ``U_prev`` (twice) and orthonormalised through its Gram
    matrix (twice; directions below ``1e-6`` of the longest ``Z`` row dropped), its image
    following by linearity, so every image stays exact. When the joint basis ``B`` has at most
    ``rank`` vectors it is kept whole with ``T = Bᵀ J B``; otherwise ``T`` is reduced to real
    Schur form, sorted so that the ``rank`` Ritz values of largest modulus come first, and cut
    there (one more when the cut would split a complex pair).

    Args:
        space: search directions ``Z``, one per row, shape (m, n); image: ``J Z``, shape (m, n), for the same ``J``.
        rank: the most vectors to keep (≥ 1).
        previous: a deflation for the same ``J`` whose subspace joins the search space, or None.
    """
    if rank < 1:
        raise ValueError(f"harvest needs rank ≥ 1, got {rank}.")
    floor = (1e-6 * float(np.linalg.norm(space, axis=1).max())) ** 2
    if previous is not None:
        for _ in range(2):
            overlap = space @ previous.basis.T
            space, image = space - overlap @ previous.basis, image - overlap @ previous.image
    for _ in range(2):
        values, vectors = np.linalg.eigh(space @ space.T)
        keep = values > floor
        transform = (vectors[:, keep] / np.sqrt(values[keep])).T
        space, image, floor = transform @ space, transform @ image, 0.25
    if previous is None:
        basis, joint_image, g = space, image, space @ image.T
    else:
        basis, joint_image = np.vstack([previous.basis, space]), np.vstack([previous.image, image])
        g = np.block([[previous.compression, previous.basis @ image.T], [space @ previous.image.T, space @ image.T]])
    if basis.shape[0] <= rank:
        return Deflation(basis, joint_image, g)
    moduli = np.sort(np.abs(np.linalg.eigvals(g)))[::-1]
    cut = moduli[rank - 1] * (1.0 - 1e-12)
    schur, vectors, chosen = scipy.linalg.schur(g, output="real", sort=lambda re, im: np.hypot(re, im) >= cut)
    return Deflation(vectors[:, :chosen].T @ basis, vectors[:, :chosen].T @ joint_image, schur[:chosen, :chosen])
