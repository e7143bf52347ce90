r"""Flat second variation and the curvature test of docs/theory.md §7.

Along the segment ``µ_s = (1 − s)µ + sν`` mass moves and nothing is transported; ``h_{µ_s}``
is affine in ``s``, so ``L(µ_s)`` is a function of moments that are polynomials in ``s``.
Here ``s ↦ L(µ_s)`` is the landscape's own loss on the union of the two particle sets with
weights ``((1 − s)p, s q)``, differentiated twice in ``s`` by forward-mode autograd
(exact; :func:`landscape.second_order.references.flat_second_variation_closed_form` is the
independent closed form it is tested against). Reverse mode only: in torch 2.13
forward-over-forward differentiation through ``torch.linalg.solve`` returns wrong second
derivatives (measured; reverse-over-reverse and forward-over-reverse are correct).

The curvature test takes ``ν_R``: the teacher pushed through a map ``R`` (k × k°) acting on
the ``a``'s (``h_{ν_R} = R f°`` when student and teacher share σ), and minimises
``φ(R) = d²L(µ_s)/ds²|₀`` under ``‖R‖_F ≤ ρ``. At ``N = ∞`` ``φ`` is a quadratic form in ``R``
(``φ(0) = 0`` since ``L`` is scale-invariant), so the constrained minimum is a trust-region
subproblem, solved exactly by an eigendecomposition (:func:`trust_region_minimum`). At
finite ``N`` the same quadratic model is minimised and ``φ`` is then evaluated exactly at
its minimiser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import grad, jacrev

from ..landscape import AttentionLandscape
from ..model.measure import ParticleMeasure

__all__ = ["flat_derivatives", "pushed_teacher", "trust_region_minimum", "CurvatureTest", "curvature_test"]


def _union_loss(landscape: AttentionLandscape, mu: tuple, nu: tuple):
    a = torch.cat([mu[0], nu[0]])
    w = torch.cat([mu[1], nu[1]])

    def loss(s: torch.Tensor) -> torch.Tensor:
        return landscape.loss(a, w, torch.cat([(1 - s) * mu[2], s * nu[2]]))

    return loss


def flat_derivatives(landscape: AttentionLandscape, measure: ParticleMeasure, nu: ParticleMeasure) -> tuple[float, float]:
    """``(dL(µ_s)/ds, d²L(µ_s)/ds²)`` at ``s = 0`` for ``µ_s = (1 − s)µ + sν``.

    Raises:
        ValueError: when ``ν`` has other ``k`` or ``d`` than ``µ`` or does not fit the problem.
    """
    if (nu.features, nu.dim) != (measure.features, measure.dim):
        raise ValueError(f"ν must have k = {measure.features} and d = {measure.dim}, got k = {nu.features}, d = {nu.dim}.")
    landscape.check_measure(measure)
    tensors = dict(dtype=landscape.dtype, device=landscape.device)
    loss = _union_loss(landscape, measure.tensors(**tensors), nu.tensors(**tensors))
    s0 = torch.zeros((), **tensors)
    return float(grad(loss)(s0)), float(grad(grad(loss))(s0))


def pushed_teacher(landscape: AttentionLandscape, r: np.ndarray) -> ParticleMeasure:
    """``ν_R = Σ_l (1/L) δ_{(L R c_l, u_l)}``: the teacher's features mapped by ``R`` (k, k°).

    ``w_l = u_l`` (with a zero bias column when the student has a bias); ``h_{ν_R} = R f°``
    when the student's σ is the teacher's.
    """
    teacher = landscape.teacher
    c, u = teacher.c, teacher.u
    if landscape.bias:
        u = np.concatenate([u, np.zeros((u.shape[0], 1))], axis=1)
    return ParticleMeasure(teacher.neurons * c @ np.asarray(r).T, u)


def trust_region_minimum(h: np.ndarray, g: np.ndarray, radius: float) -> np.ndarray:
    """The exact minimiser of ``gᵀr + ½ rᵀ h r`` over ``‖r‖ ≤ radius`` (h symmetric, shape (m, m)).

    Solves ``(h + µI) r = −g`` with ``µ ≥ max(0, −λ_min(h))`` and ``µ(radius − ‖r‖) = 0`` by
    bisection on ``µ`` in the eigenbasis; the "hard case" (``g`` orthogonal to the lowest
    eigenvectors) adds a multiple of the lowest eigenvector to reach the boundary.

    Raises:
        ValueError: on a non-positive radius or mismatched shapes.
    """
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius!r}.")
    if h.shape != (g.size, g.size):
        raise ValueError(f"h must have shape ({g.size}, {g.size}), got {h.shape}.")
    lam, v = np.linalg.eigh(0.5 * (h + h.T))
    gt = v.T @ g
    tiny = 1e-13 * max(1.0, float(np.abs(lam).max()))

    def step(mu: float) -> np.ndarray:
        return -gt / (lam + mu)

    if lam[0] > tiny and np.linalg.norm(step(0.0)) <= radius:
        return v @ step(0.0)
    lo = max(0.0, -lam[0])
    low = np.abs(lam - lam[0]) <= tiny
    if np.linalg.norm(gt[low]) <= tiny * max(1.0, np.linalg.norm(g)):  # hard case
        rest = np.where(low, 0.0, -gt / np.where(low, 1.0, lam - lam[0] if lo > 0 else lam))
        extra = math.sqrt(max(radius**2 - float(rest @ rest), 0.0))
        if np.linalg.norm(rest) <= radius:
            rest[np.argmax(low)] = extra
            return v @ rest
    hi = lo + np.linalg.norm(g) / radius + 1.0
    while np.linalg.norm(step(hi)) > radius:
        hi *= 2.0
    lo = lo + tiny
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.linalg.norm(step(mid)) > radius:
            lo = mid
        else:
            hi = mid
    return v @ step(hi)


@dataclass(frozen=True)
class CurvatureTest:
    """The curvature test at ``µ`` (docs/theory.md §7).

    Attributes:
        second_variation: ``d²L(µ_s)/ds²|₀`` at the optimised ``R``.
        first_variation: ``dL(µ_s)/ds|₀`` there.
        loss: ``L(µ)``; loss_squared: ``L(µ)²``; ratio: ``second_variation / L(µ)²`` (None when ``L(µ) = 0``).
        r1: ``R₁``, the largest ``|a|`` over the particles of ``µ`` and ``ν_R``.
        bound_constant: ``4 / (k R₁²)``; bound_holds: ``ratio ≤ −bound_constant``.
        map: array of shape (k, k°), the optimised ``R``; norm: the bound ``ρ`` on ``‖R‖_F``.
    """

    second_variation: float
    first_variation: float
    loss: float
    loss_squared: float
    ratio: float | None
    r1: float
    bound_constant: float
    bound_holds: bool
    map: np.ndarray
    norm: float

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "map"}
        out["map"] = self.map.tolist()
        return out


def curvature_test(landscape: AttentionLandscape, measure: ParticleMeasure, norm: float | None = None) -> CurvatureTest:
    """Minimise ``d²L(µ_s)/ds²`` over ``ν_R``, ``‖R‖_F ≤ norm`` (default ``√k``), and report the ratio.

    Raises:
        ValueError: on a non-positive norm or a measure that does not fit the problem.
    """
    landscape.check_measure(measure)
    k, k0 = measure.features, landscape.teacher.features
    norm = math.sqrt(k) if norm is None else float(norm)
    if not norm > 0:
        raise ValueError(f"the norm bound on R must be positive, got {norm!r}.")
    tensors = dict(dtype=landscape.dtype, device=landscape.device)
    mu = measure.tensors(**tensors)
    nu0 = pushed_teacher(landscape, np.zeros((k, k0)))
    c = torch.as_tensor(landscape.teacher.c, **tensors)
    _, nu_w, nu_q = nu0.tensors(**tensors)
    scale = float(landscape.teacher.neurons)

    def phi(r_flat: torch.Tensor) -> torch.Tensor:
        nu_a = scale * c @ r_flat.reshape(k, k0).T
        loss = _union_loss(landscape, mu, (nu_a, nu_w, nu_q))
        return grad(grad(loss))(torch.zeros((), **tensors))

    r0 = torch.zeros(k * k0, **tensors)
    g = grad(phi)(r0).cpu().numpy()
    h = jacrev(jacrev(phi))(r0).cpu().numpy()
    r = trust_region_minimum(h, g, norm).reshape(k, k0)
    nu = pushed_teacher(landscape, r)
    d1, d2 = flat_derivatives(landscape, measure, nu)
    loss = float(landscape.loss(*mu))
    r1 = max(float(np.linalg.norm(measure.a, axis=1).max()), float(np.linalg.norm(nu.a, axis=1).max()))
    const = 4.0 / (k * r1**2)
    ratio = d2 / loss**2 if loss > 0 else None
    return CurvatureTest(d2, d1, loss, loss**2, ratio, r1, const, ratio is not None and ratio <= -const, r, norm)
