r"""Dense references for the second-order code, and the known answers of docs/theory.md §9.

Nothing here is fast: these are the slow, obviously-correct versions that the operators
and solvers are compared with in float64 (dense ``torch.func.hessian``, dense ``eigh``),
plus constructors of the problems whose answers docs/theory.md states.
"""

from __future__ import annotations

import numpy as np
import torch

from .activations import get_activation
from .expectations import ExactGaussianExpectation
from .measure import ParticleMeasure
from .problem import AttentionLandscape
from .teacher import Teacher

__all__ = [
    "dense_hessian",
    "dense_wasserstein_hessian",
    "dense_spectrum",
    "flat_second_variation_closed_form",
    "orthogonal_teacher_landscape",
    "teacher_measure",
    "dead_neuron_saddle",
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


# ------------------------------------------------------------ docs/theory.md §9 cases
def orthogonal_teacher_landscape(
    features: int = 3, dim: int = 6, scale: float = 1.5, activation: str = "erf", noise: float = 0.0
) -> AttentionLandscape:
    """docs/theory.md §9: ``k°`` orthogonal teacher neurons ``u_l = s e_l``, ``c_l = e_l``, ``N = ∞``.

    Raises:
        ValueError: when ``dim < features + 1`` (a dead direction is needed).
    """
    if dim < features + 1:
        raise ValueError(f"dim must exceed features so a dead direction exists, got dim={dim}, features={features}.")
    act = get_activation(activation)
    teacher = Teacher(np.eye(features), scale * np.eye(dim)[:features], act)
    return AttentionLandscape(teacher, ExactGaussianExpectation(teacher, act), noise=noise)


def teacher_measure(features: int = 3, dim: int = 6, scale: float = 1.5, a: np.ndarray | None = None) -> ParticleMeasure:
    """The student equal to the teacher (``M = k`` particles at ``s e_l``), a global minimum.

    ``a`` (k, k) may be any invertible matrix (the GL(k) orbit); identity by default.
    """
    a = np.eye(features) if a is None else np.asarray(a, dtype=np.float64)
    return ParticleMeasure(a, scale * np.eye(dim)[:features])


def dead_neuron_saddle(features: int = 3, dim: int = 6, scale: float = 1.5, dead: int = 1) -> ParticleMeasure:
    """``k − dead`` particles on teacher directions, ``dead`` at ``s e_m``, ``m ≥ k°``: a strict saddle."""
    rows = list(range(features - dead)) + list(range(features, features + dead))
    if rows[-1] >= dim:
        raise ValueError(f"dim = {dim} too small for {dead} dead neuron(s) with {features} features.")
    return ParticleMeasure(np.eye(features), scale * np.eye(dim)[rows])
