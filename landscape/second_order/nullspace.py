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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.measure import ParticleMeasure
from .operators import WassersteinHessian

__all__ = ["NullSpace", "symmetry_fields", "symmetry_basis", "null_space", "coincident_groups"]


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
    """

    basis: torch.Tensor
    null_dim: int
    symmetry_dim: int
    residual: float
    counts: dict
    spectrum: np.ndarray


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
        group = [(i, 1)]
        for j in range(i + 1, measure.size):
            if seen[j]:
                continue
            for sign in (1, -1) if odd else (1,):
                if np.linalg.norm(w[j] - sign * w[i]) <= tol:
                    group.append((j, sign))
                    seen[j] = True
                    break
        if len(group) > 1:
            groups.append(group)
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


def symmetry_basis(measure: ParticleMeasure, odd: bool, homogeneous: bool, rtol: float = 1e-10) -> tuple[torch.Tensor, dict]:
    """Orthonormal basis (n, r) of the symmetry candidates in flat L²(µ) coordinates, and counts.

    Columns are the left singular vectors of the stacked ``P^{1/2} v`` with singular value
    above ``rtol`` times the largest.
    """
    fields, counts = symmetry_fields(measure, odd, homogeneous)
    root_p = np.sqrt(np.asarray(measure.p))[None, :, None]
    stacked = (root_p * fields).reshape(fields.shape[0], -1).T
    u, sv, _ = np.linalg.svd(stacked, full_matrices=False)
    rank = int(np.sum(sv > rtol * sv[0])) if sv.size and sv[0] > 0 else 0
    return torch.as_tensor(u[:, :rank].copy()), counts


def null_space(operator: WassersteinHessian, tol: float, rank_rtol: float = 1e-10) -> NullSpace:
    """The largest subspace of the symmetry span on which ``‖H q‖ ≤ tol`` (unit ``q``).

    Costs ``symmetry_dim`` Hessian-vector products (one batch).

    Args:
        operator: the Wasserstein Hessian at ``µ``.
        tol: absolute threshold on ``‖H q‖`` for a deflated direction.
        rank_rtol: relative singular-value cut for linearly dependent candidates.
    """
    act = operator.landscape.expectation.activation
    q, counts = symmetry_basis(operator.measure, act.odd, act.homogeneous, rank_rtol)
    q = q.to(dtype=operator.dtype, device=operator.device)
    if q.shape[1] == 0:
        return NullSpace(q, 0, 0, 0.0, counts, np.zeros(0))
    hq = operator.matmat(q)
    _, sv, vh = torch.linalg.svd(hq, full_matrices=True)
    sv_full = torch.zeros(q.shape[1], dtype=q.dtype, device=q.device)
    sv_full[: sv.numel()] = sv
    keep = sv_full <= tol
    basis = q @ vh.T[:, keep]  # orthonormal: q and vh are
    h_basis = hq @ vh.T[:, keep]
    residual = float(torch.linalg.norm(h_basis, dim=0).max()) if keep.any() else 0.0
    small = basis.T @ h_basis
    spectrum = torch.linalg.eigvalsh(0.5 * (small + small.T)).cpu().numpy() if keep.any() else np.zeros(0)
    return NullSpace(basis, int(keep.sum()), int(q.shape[1]), residual, counts, spectrum)
