r"""Risks of the models the trained MLP is compared with (docs/theory.md §10.1).

At ``N = ∞`` every feature map ``h`` has the in-context risk
``L_∞(h) = ½[τ² + tr Σ_°° − tr(Σ_°h Σ_hh⁺ Σ_h°)]``: the noise floor plus the part of ``f°``
outside the span of ``h`` (docs/theory.md §4). Two comparison models:

* linear attention on raw inputs, ``h(x) = x`` (``k = d``). For ``x ~ N(0, I_d)``,
  ``Σ_hh = I`` and, by Stein's lemma, ``E[x σ(u·x)] = u E[σ'(u·x)]``, so
  ``Σ_h° = Σ_l u_l c_lᵀ E[σ'(|u_l| g)]`` with ``g ~ N(0, 1)``: closed form for erf
  (``E[erf'(|u| g)] = 2/√(π(1 + 2|u|²))``), a 1-D Gauss–Hermite rule otherwise. For an
  empirical law it is least squares on the rows (:func:`linear_attention_risk_sampled`).
* a frozen random-feature MLP of width ``M``: ``w_i`` fixed, ``a`` optimal. With ``k ≥ k°``
  the best ``a`` makes ``h`` span the projection of ``f°`` onto ``span{σ(w_i·x)}``, so the
  risk is ``L_∞`` of the measure ``a = I_M`` (``k = M`` features, weights 1) — the exact
  kernel matrices, through the same moments code as the landscape, with a pseudo-inverse
  (relative cutoff ``1e-12``) because many random features can be nearly dependent.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from landscape.landscape import AttentionLandscape
from landscape.model.measure import ParticleMeasure
from landscape.model.teacher import Teacher

__all__ = [
    "explained_by",
    "linear_attention_risk_sampled",
    "linear_attention_risk_stein",
    "random_feature_risk",
    "sampled_loss_inf",
    "signal",
]

#: eigenvalues of Σ_hh below this fraction of the largest are dropped (pseudo-inverse).
PINV_RTOL = 1e-12


def explained_by(sigma_hh: np.ndarray, sigma_ht: np.ndarray, rtol: float = PINV_RTOL) -> float:
    """``tr(Σ_°h Σ_hh⁺ Σ_h°)`` for ``sigma_hh`` (k, k) and ``sigma_ht`` (k, k°)."""
    vals, vecs = np.linalg.eigh(0.5 * (sigma_hh + sigma_hh.T))
    keep = vals > rtol * max(vals[-1], 0.0)
    proj = vecs[:, keep].T @ sigma_ht
    return float(np.sum(proj**2 / vals[keep, None]))


def _mean_derivative(teacher: Teacher, radius: float) -> float:
    """``E[σ'(r g)]``, ``g ~ N(0, 1)``: closed form for erf, else 161-node Gauss–Hermite (error < 1e-12 for smooth σ)."""
    if teacher.activation.name == "erf":
        return 2.0 / math.sqrt(math.pi * (1.0 + 2.0 * radius**2))
    nodes, weights = np.polynomial.hermite_e.hermegauss(161)
    z = torch.as_tensor(radius * nodes, dtype=torch.float64).requires_grad_(True)
    (deriv,) = torch.autograd.grad(teacher.activation(z).sum(), z)
    return float(np.dot(weights, deriv.numpy()) / math.sqrt(2 * math.pi))


def linear_attention_risk_stein(teacher: Teacher, sigma_tt: np.ndarray, noise: float) -> tuple[float, np.ndarray]:
    """``L_∞`` of linear attention on raw ``x ~ N(0, I_d)`` by Stein's lemma; also ``Σ_x° = E[x f°ᵀ]`` (d, k°)."""
    cross = sum(
        np.outer(u, c) * _mean_derivative(teacher, float(np.linalg.norm(u))) for u, c in zip(teacher.u, teacher.c, strict=True)
    )
    return 0.5 * (noise**2 + float(np.trace(sigma_tt)) - float(np.sum(cross**2))), cross


def linear_attention_risk_sampled(teacher: Teacher, x: np.ndarray, noise: float) -> float:
    """``L_∞`` of linear attention on raw ``x`` for the uniform law on the rows of ``x`` (n, d): least squares."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    f = teacher(xt).numpy()
    n = x.shape[0]
    return 0.5 * (noise**2 + float(np.sum(f**2)) / n - explained_by(x.T @ x / n, x.T @ f / n))


def random_feature_risk(landscape: AttentionLandscape, w: np.ndarray) -> float:
    """``L_∞`` of the frozen random-feature MLP with neurons ``w`` (M, d) and optimal ``a`` (needs ``k ≥ k°``)."""
    m = w.shape[0]
    eye = torch.eye(m, dtype=landscape.dtype, device=landscape.device)
    wt = torch.as_tensor(w, dtype=landscape.dtype, device=landscape.device)
    with torch.no_grad():
        mom = landscape.expectation.moments(eye, wt, torch.ones(m, dtype=landscape.dtype, device=landscape.device))
    sigma_tt = landscape.expectation.sigma_tt.cpu().numpy()
    explained = explained_by(mom.sigma_mm.cpu().numpy(), mom.sigma_mt.cpu().numpy())
    return 0.5 * (landscape.noise**2 + float(np.trace(sigma_tt)) - explained)


def sampled_loss_inf(
    landscape: AttentionLandscape, measure: ParticleMeasure, samples: int, batches: int = 20, seed: int = 0
) -> tuple[float, float]:
    """``L_∞(µ)`` by Monte Carlo over ``x ~ N(0, I_d)``, no kernel closed form: ``(estimate, standard error)``.

    Draws ``samples`` inputs, evaluates the student's features ``h(x) = Σ_i p_i a_i σ(w_i·x)``
    (``x`` with a trailing 1 when the model has a bias) and the teacher's ``f°(x)`` pointwise, and
    plugs the sample second moments into ``½[τ² + tr Σ_°° − tr(Σ_°h Σ_hh⁻¹ Σ_h°)]``. The
    standard error (and a bias correction of the plug-in, whose bias is ``O(1/samples)``) is the
    delete-one-group jackknife over ``batches`` equal groups. Gaussian input law only.
    """
    if samples % batches:
        raise ValueError(f"samples ({samples}) must be a multiple of batches ({batches}).")
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.standard_normal((samples, landscape.teacher.dim)), dtype=torch.float64)
    xb = torch.cat([x, torch.ones(samples, 1, dtype=x.dtype)], 1) if landscape.bias else x
    a, w, p = (torch.as_tensor(np.array(v, dtype=float)) for v in (measure.a, measure.w, measure.p))
    with torch.no_grad():
        h = landscape.expectation.activation(xb @ w.T) @ (p[:, None] * a)
        f = landscape.teacher(x)
    k = h.shape[1]
    z = torch.cat([h, f], 1).numpy().reshape(batches, samples // batches, -1)
    sums = np.einsum("bni,bnj->bij", z, z)  # per-group Σ z zᵀ, z = (h, f°)

    def plug_in(total: np.ndarray, n: int) -> float:
        m = total / n
        return 0.5 * (landscape.noise**2 + float(np.trace(m[k:, k:])) - explained_by(m[:k, :k], m[:k, k:]))

    full = plug_in(sums.sum(0), samples)
    leave_one = np.array([plug_in(sums.sum(0) - sums[b], samples - samples // batches) for b in range(batches)])
    corrected = batches * full - (batches - 1) * leave_one.mean()
    stderr = math.sqrt((batches - 1) / batches * float(np.sum((leave_one - leave_one.mean()) ** 2)))
    return float(corrected), stderr


def signal(landscape: AttentionLandscape) -> float:
    """``tr Σ_°°``: the signal of the teacher (the denominator of :func:`verification.analysis.relative_excess`)."""
    return float(torch.trace(landscape.expectation.sigma_tt))
