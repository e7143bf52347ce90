r"""Null directions of the Wasserstein Hessian that symmetries explain (docs/theory.md §7).

Candidates, as tangent fields ``v = (v_i)``, ``v_i = (δa_i, δw_i)``:

* ``GL(k)``: ``v_i = (B a_i, 0)`` for the ``k²`` matrix units ``B = E_rs``;
* positive homogeneity (ReLU, when the activation says so): ``v_i = (−a_i, w_i)`` at one
  particle ``i``, zero elsewhere;
* coincident particles: inside a group sharing one ``w`` (or ``±w`` for odd σ, sign
  ``s_i``), only ``Σ p_i s_i a_i`` matters, so every ``δa`` with ``Σ p_i s_i δa_i = 0`` is a
  candidate (``(m − 1)·k`` per group of ``m``).

The candidates are orthonormalised in L²(µ) (flat coordinates ``u = P^{1/2} v``) with a
rank-revealing SVD. Only the part of their span that ``H`` annihilates is deflated:
at a critical point the ``GL(k)`` and homogeneity directions are exact null vectors, but
the coincident-particle directions are null only where the common ``w`` is stationary
for every ``a``, and deflating a non-invariant subspace could hide negative curvature.

The check needs ``Ĥ Q`` for the whole basis. The families are known in closed form
(:func:`symmetry_products`), so it costs one gradient, one velocity evaluation at probes
and two Hessian-vector products that verify the closed form on random combinations of
the columns; only where that verification fails (a ridge breaks ``GL(k)``, §4.B) are the
``symmetry_dim`` products taken one column each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components

from ..landscape import AttentionLandscape
from ..model.measure import ParticleMeasure
from .hessian import gradient
from .operators import WassersteinHessian

__all__ = ["NullSpace", "symmetry_fields", "symmetry_products", "symmetry_basis", "null_space", "coincident_groups"]

#: random combinations of the basis on which the closed-form ``Ĥ Q`` is verified.
CHECK_PROBES = 2
#: the closed form is accepted when it matches ``Ĥ (Q z)`` to ``CHECK_RTOL · tol`` per probe.
CHECK_RTOL = 1e-3


@dataclass(frozen=True)
class NullSpace:
    """The deflated subspace.

    Attributes:
        basis: tensor of shape (n, null_dim), orthonormal columns (flat ``P^{1/2} v`` coordinates).
        null_dim: number of deflated directions.
        symmetry_dim: rank of the symmetry candidates (``≥ null_dim``).
        residual: ``max ‖H q‖`` over the deflated columns (0 when none).
        counts: candidates per family before orthonormalisation.
        spectrum: array of shape (null_dim,), eigenvalues of ``QᵀHQ`` on the deflated space
            (zero to working precision when the deflation is sound).
        hvp_count: operator columns applied by the check (``CHECK_PROBES`` when the closed
            form was verified, plus ``symmetry_dim`` when it was not).
        check_error: largest ``‖Ĥ(Qz) − (ĤQ)_closed z‖`` over the verification probes
            when the closed form was used, else 0.
    """

    basis: torch.Tensor
    null_dim: int
    symmetry_dim: int
    residual: float
    counts: dict
    spectrum: np.ndarray
    hvp_count: int = 0
    check_error: float = 0.0


def coincident_groups(measure: ParticleMeasure, odd: bool, atol: float = 1e-12) -> list[list[tuple[int, int]]]:
    """Groups of ≥ 2 particles sharing one ``w`` (or ``±w`` if ``odd``), as ``[(index, sign), …]``.

    ``w_i`` and ``w_j`` coincide when ``‖w_i − s w_j‖ ≤ atol · max(1, ‖w_i‖)``.
    """
    w = np.asarray(measure.w)
    seen = np.zeros(measure.size, dtype=bool)
    groups = []
    for i in range(measure.size):
        if seen[i]:
            continue
        tol = atol * max(1.0, float(np.linalg.norm(w[i])))
        rest = np.flatnonzero(~seen)
        rest = rest[rest > i]
        same = np.linalg.norm(w[rest] - w[i], axis=1) <= tol
        flipped = ~same & (np.linalg.norm(w[rest] + w[i], axis=1) <= tol) if odd else np.zeros(rest.size, dtype=bool)
        members = rest[same | flipped]
        seen[members] = True
        if members.size:
            groups.append([(i, 1)] + [(int(j), 1 if s else -1) for j, s in zip(members, same[same | flipped], strict=True)])
    return groups


def symmetry_fields(measure: ParticleMeasure, odd: bool, homogeneous: bool) -> tuple[np.ndarray, dict]:
    """All candidate fields, shape (c, M, k + d), and the count per family."""
    m, k, d = measure.size, measure.features, measure.dim
    a, w, p = np.asarray(measure.a), np.asarray(measure.w), np.asarray(measure.p)
    fields = []
    for r in range(k):
        for s in range(k):
            v = np.zeros((m, k + d))
            v[:, r] = a[:, s]
            fields.append(v)
    counts = {"gl_k": k * k, "homogeneity": 0, "coincident": 0}
    if homogeneous:
        for i in range(m):
            v = np.zeros((m, k + d))
            v[i, :k], v[i, k:] = -a[i], w[i]
            fields.append(v)
        counts["homogeneity"] = m
    for group in coincident_groups(measure, odd):
        first, s0 = group[0]
        for j, sj in group[1:]:
            for r in range(k):
                v = np.zeros((m, k + d))
                v[j, r] = sj / p[j]
                v[first, r] = -s0 / p[first]
                fields.append(v)
                counts["coincident"] += 1
    return np.stack(fields), counts


def symmetry_products(landscape: AttentionLandscape, measure: ParticleMeasure, odd: bool, homogeneous: bool) -> np.ndarray:
    r"""``∇²F v`` for every candidate ``v`` of :func:`symmetry_fields`, same order; shape (c, M, k + d).

    Closed forms (docs/theory.md §4 and §5), from ``∇F`` and the velocity at probes only:

    * a symmetry ``F(φ_t θ) = F(θ)`` whose generator ``X(θ) = Aθ`` is linear gives
      ``∇F·Aθ = 0`` for all ``θ``, hence ``∇²F X = −Aᵀ∇F``. ``GL(k)`` (``B = E_rs``):
      ``(∇²F v)_{a_i, s} = −(∇F)_{a_i, r}``, zero elsewhere. Homogeneity at particle ``i``:
      ``(∂F/∂a_i, −∂F/∂w_i)`` on block ``i``, zero elsewhere;
    * a coincident field moves ``a`` only and leaves ``h_µ`` unchanged, so the moments and
      ``U(w) = ∇_a G(a, w)`` (``G = a·U`` is linear in ``a``) do not move: only the local term
      ``∂_t ∂F/∂w_l = p_l ∇U(w_l)ᵀ δa_l`` survives. For ``δa_j = (s_j/p_j) e_r``,
      ``δa_first = −(s_0/p_first) e_r``: ``(∇²F v)_{w_j} = s_j ∇U_r(w_j)`` and
      ``(∇²F v)_{w_first} = −s_0 ∇U_r(w_first)``; ``∇U_r(w_l)`` is the ``w``-part of the
      velocity at the probe ``(e_r, w_l)``.

    The ``GL(k)`` form needs the invariance of §4, which a ridge breaks (§4.B): callers
    verify the products (:func:`null_space` does, on random combinations).
    """
    m, k, d = measure.size, measure.features, measure.dim
    g = gradient(landscape, measure).reshape(m, k + d).cpu().numpy()
    products = []
    for r in range(k):
        for s in range(k):
            h = np.zeros((m, k + d))
            h[:, s] = -g[:, r]
            products.append(h)
    if homogeneous:
        for i in range(m):
            h = np.zeros((m, k + d))
            h[i, :k], h[i, k:] = g[i, :k], -g[i, k:]
            products.append(h)
    groups = coincident_groups(measure, odd)
    if groups:
        members = sorted({i for group in groups for i, _ in group})
        a, w, p = measure.tensors(landscape.dtype, landscape.device)
        probe_a = torch.eye(k, dtype=a.dtype, device=a.device).repeat(len(members), 1)  # (|members|·k, k)
        probe_w = w[members].repeat_interleave(k, dim=0)
        grad_u = landscape.velocity(a, w, p, probe_a, probe_w)[:, k:].reshape(len(members), k, d).cpu().numpy()
        row = {i: grad_u[n] for n, i in enumerate(members)}  # row[i][r] = ∇U_r(w_i), shape (k, d)
        for group in groups:
            first, s0 = group[0]
            for j, sj in group[1:]:
                for r in range(k):
                    h = np.zeros((m, k + d))
                    h[j, k:] = sj * row[j][r]
                    h[first, k:] = -s0 * row[first][r]
                    products.append(h)
    return np.stack(products)


def _orthonormalise(stacked: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """``(U, C)`` with ``U = stacked @ C`` (n, r) orthonormal, spanning the columns of ``stacked`` (n, c).

    ``C`` has shape (c, r). Columns that share no nonzero row form independent blocks, and
    each block gets its own SVD: the singular values are those of the whole matrix, and
    the rank cut keeps those above ``rtol`` times the largest: the rank-revealing SVD of the
    whole matrix, done in small blocks (at the §9 saddle split ×16: 25 blocks of 16 columns
    instead of one SVD of size 2000 × 400).
    """
    n, c = stacked.shape
    support = sp.csr_matrix(stacked != 0)
    blocks, label = connected_components(support.T @ support, directed=False)
    values, vectors, coefs = [], [], []
    for b in range(blocks):
        cols = np.flatnonzero(label == b)
        rows = np.flatnonzero(support[:, cols].getnnz(axis=1))
        if rows.size == 0:
            continue
        u, sv, vh = np.linalg.svd(stacked[np.ix_(rows, cols)], full_matrices=False)
        full_u = np.zeros((n, sv.size))
        full_u[rows] = u
        coef = np.zeros((c, sv.size))
        coef[cols] = vh.T / np.where(sv > 0, sv, 1.0)
        values.append(sv)
        vectors.append(full_u)
        coefs.append(coef)
    if not values:
        return np.zeros((n, 0)), np.zeros((c, 0))
    sv = np.concatenate(values)
    order = np.argsort(-sv, kind="stable")
    keep = order[sv[order] > rtol * sv[order[0]]] if sv[order[0]] > 0 else order[:0]
    return np.concatenate(vectors, axis=1)[:, keep], np.concatenate(coefs, axis=1)[:, keep]


def _basis(measure: ParticleMeasure, odd: bool, homogeneous: bool, rtol: float) -> tuple[dict, np.ndarray, np.ndarray]:
    """Counts, basis (n, r) and coefficients (c, r) with ``basis = P^{1/2} fields · coef`` (fields flattened to (n, c))."""
    fields, counts = symmetry_fields(measure, odd, homogeneous)
    root_p = np.sqrt(np.asarray(measure.p))[None, :, None]
    stacked = (root_p * fields).reshape(fields.shape[0], -1).T
    basis, coef = _orthonormalise(stacked, rtol)
    return counts, basis, coef


def symmetry_basis(measure: ParticleMeasure, odd: bool, homogeneous: bool, rtol: float = 1e-10) -> tuple[torch.Tensor, dict]:
    """Orthonormal basis (n, r) of the symmetry candidates in flat L²(µ) coordinates, and counts.

    Columns are the left singular vectors of the stacked ``P^{1/2} v`` with singular value
    above ``rtol`` times the largest.
    """
    counts, basis, _ = _basis(measure, odd, homogeneous, rtol)
    return torch.as_tensor(basis), counts


def null_space(
    operator: WassersteinHessian, tol: float, rank_rtol: float = 1e-10, closed_form: bool = True, seed: int = 0
) -> NullSpace:
    """The largest subspace of the symmetry span on which ``‖H q‖ ≤ tol`` (unit ``q``).

    ``ĤQ`` comes from the closed forms of :func:`symmetry_products`, verified by
    ``CHECK_PROBES`` Hessian-vector products: ``‖Ĥ(Qz) − (ĤQ) z‖ ≤ CHECK_RTOL · tol`` for
    standard Gaussian ``z`` (a Freivalds check: an error ``E`` passes one probe with
    probability about ``CHECK_RTOL · tol / ‖E‖₂``). If it fails, ``ĤQ`` is computed column
    by column (``symmetry_dim`` products), as it always is with ``closed_form=False`` (the
    reference path, for tests and benchmarks). Either way the kept subspace is spanned by the
    right singular vectors of ``ĤQ`` with singular value ``≤ tol``; the residual is the
    largest of those singular values (``‖Ĥ Q v‖ = σ`` for a right singular vector ``v``),
    plus ``check_error`` when the closed form was used.

    Args:
        operator: the Wasserstein Hessian at ``µ``.
        tol: absolute threshold on ``‖H q‖`` for a deflated direction.
        rank_rtol: relative singular-value cut for linearly dependent candidates.
        closed_form: use :func:`symmetry_products` (verified); False: one product per column.
        seed: seed of the verification probes.
    """
    act = operator.landscape.expectation.activation
    measure = operator.measure
    counts, q, coef = _basis(measure, act.odd, act.homogeneous, rank_rtol)
    rank = q.shape[1]
    if rank == 0:
        return NullSpace(torch.zeros(operator.size, 0, dtype=operator.dtype, device=operator.device), 0, 0, 0.0, counts, np.zeros(0))
    start = operator.calls
    q_sparse = sp.csr_matrix(q)  # each column lives on the rows of its block
    q_t = torch.as_tensor(q, dtype=operator.dtype, device=operator.device)
    hq, check_error = None, 0.0
    if closed_form:
        products = symmetry_products(operator.landscape, measure, act.odd, act.homogeneous)
        scale = operator.scale.cpu().numpy()[:, None]
        hq = scale * (sp.csr_matrix(products.reshape(products.shape[0], -1)).T @ coef)  # P^{-1/2} ∇²F P^{-1/2} Q
        z = np.random.default_rng(seed).standard_normal((rank, CHECK_PROBES))
        probed = operator.matmat(q_t @ torch.as_tensor(z, dtype=operator.dtype, device=operator.device)).cpu().numpy()
        check_error = float(np.linalg.norm(probed - hq @ z, axis=0).max())
        if not check_error <= CHECK_RTOL * tol:
            hq, check_error = None, 0.0
    if hq is None:
        hq = operator.matmat(q_t).cpu().numpy()
    sv, right = _right_singular(hq)
    keep = sv <= tol
    kept = right[:, keep]
    residual = float(sv[keep].max()) + check_error if keep.any() else 0.0
    small = kept.T @ (q_sparse.T @ hq) @ kept
    spectrum = np.linalg.eigvalsh(0.5 * (small + small.T)) if keep.any() else np.zeros(0)
    basis = torch.as_tensor(q_sparse @ kept, dtype=operator.dtype, device=operator.device)  # orthonormal: q and right are
    return NullSpace(basis, int(keep.sum()), rank, residual, counts, spectrum, operator.calls - start, check_error)


def _right_singular(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (r,) and right singular vectors (r, r, as columns) of ``matrix`` (n, r).

    Zero rows are dropped and a tall remainder is reduced to its triangular QR factor
    first: both keep the singular values and right vectors, and the SVD is then ``r × r``.
    """
    r = matrix.shape[1]
    rows = matrix[np.any(matrix != 0, axis=1)]
    if rows.shape[0] > r:
        rows = np.linalg.qr(rows, mode="r")
    elif rows.shape[0] < r:
        rows = np.vstack([rows, np.zeros((r - rows.shape[0], r))])
    _, sv, vh = np.linalg.svd(rows)
    return sv, vh.T
