r"""Dense references for the second-order code.

Nothing here is fast: these are the slow, obviously-correct versions that the operators
and solvers are compared with in float64 (dense ``torch.func.hessian``, dense ``eigh``). The
problems whose answers docs/theory.md §9 states are built in :mod:`landscape.cases`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..landscape import AttentionLandscape
from ..model.measure import ParticleMeasure

__all__ = [
    "dense_hessian",
    "dense_wasserstein_hessian",
    "dense_spectrum",
    "flat_second_variation_closed_form",
]


def dense_hessian(landscape: AttentionLandscape, measure: ParticleMeasure, reverse: bool = False) -> torch.Tensor:
    """``∇²F``, shape (n, n), ``n = M·(k+d)`` (particle-major).

    By ``torch.func.hessian`` (forward over reverse), or with ``reverse=True`` by
    ``jacrev(jacrev(F))``, a path that shares no forward-mode rule with the HVP.
    """
    objective, theta = landscape.objective(measure)
    if reverse:
        return torch.func.jacrev(torch.func.jacrev(objective))(theta)
    return torch.func.hessian(objective)(theta)


def dense_wasserstein_hessian(landscape: AttentionLandscape, measure: ParticleMeasure) -> torch.Tensor:
    """``P^{-1/2} ∇²F P^{-1/2}``, shape (n, n), with ``P = diag(p) ⊗ I_{k+d}``.

    Raises:
        ValueError: when a weight ``p_i`` is zero (the L²(µ) metric is then degenerate).
    """
    h = dense_hessian(landscape, measure)
    s = _inverse_sqrt_weights(measure, h.dtype, h.device)
    return s[:, None] * h * s[None, :]


def dense_spectrum(landscape: AttentionLandscape, measure: ParticleMeasure) -> tuple[np.ndarray, np.ndarray]:
    """All eigenpairs of the Wasserstein Hessian by dense ``eigh``: ``(λ (n,), V (n, n))``.

    ``V`` holds eigenvectors in flat coordinates of the symmetrised operator; the field
    ``ψ = P^{-1/2} v`` is unit in L²(µ).
    """
    h = dense_wasserstein_hessian(landscape, measure)
    lam, vec = torch.linalg.eigh(0.5 * (h + h.T))
    return lam.cpu().numpy(), vec.cpu().numpy()


def _inverse_sqrt_weights(measure: ParticleMeasure, dtype: torch.dtype, device) -> torch.Tensor:
    p = np.asarray(measure.p)
    if np.any(p <= 0):
        raise ValueError(f"every weight must be positive for the L²(µ) metric, got min(p) = {p.min():.3g}.")
    s = np.repeat(p ** -0.5, measure.features + measure.dim)
    return torch.as_tensor(s, dtype=dtype, device=device)


def flat_second_variation_closed_form(landscape: AttentionLandscape, measure: ParticleMeasure, nu: ParticleMeasure) -> float:
    """``d²L_∞(µ_s)/ds²|₀`` for ``µ_s = (1 − s)µ + sν`` from second moments only (N = ∞).

    With ``S(s) = Σ_{µ_s µ_s}``, ``B(s) = Σ_{µ_s °}`` (quadratic and affine in ``s``) and
    ``f = tr(Bᵀ S⁻¹ B)``, ``L = ½(tr Σ_°° + τ² − f)`` and
    ``f'' = 2tr(B'ᵀS⁻¹B') − 4tr(B'ᵀS⁻¹S'S⁻¹B) + 2tr(BᵀS⁻¹S'S⁻¹S'S⁻¹B) − tr(BᵀS⁻¹S''S⁻¹B)``
    at ``s = 0``: ``S = Σ_µµ``, ``S' = X − 2Σ_µµ``, ``S'' = 2Σ_µµ − 2X + 2Σ_νν``,
    ``B = Σ_µ°``, ``B' = Σ_ν° − Σ_µ°``, where ``X = Σ_µν + Σ_νµ`` is read off the moments of
    the union measure (weights ``(p, q)``).
    """
    def moments(a, w, p):
        t = [torch.as_tensor(np.asarray(x), dtype=torch.float64) for x in (a, w, p)]
        m = landscape.expectation.moments(*t)
        return m.sigma_mm.cpu().numpy(), m.sigma_mt.cpu().numpy()

    s_mm, b_m = moments(measure.a, measure.w, measure.p)
    s_nn, b_n = moments(nu.a, nu.w, nu.p)
    s_uu, _ = moments(np.concatenate([measure.a, nu.a]), np.concatenate([measure.w, nu.w]), np.concatenate([measure.p, nu.p]))
    x = s_uu - s_mm - s_nn
    s1, s2 = x - 2 * s_mm, 2 * s_mm - 2 * x + 2 * s_nn
    b, b1 = b_m, b_n - b_m
    inv = np.linalg.inv(s_mm)
    f2 = (
        2 * np.trace(b1.T @ inv @ b1)
        - 4 * np.trace(b1.T @ inv @ s1 @ inv @ b)
        + 2 * np.trace(b.T @ inv @ s1 @ inv @ s1 @ inv @ b)
        - np.trace(b.T @ inv @ s2 @ inv @ b)
    )
    return float(-0.5 * f2)
