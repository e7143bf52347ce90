r"""A linearly implicit integrator for stiff flows: the modified Rosenbrock pair of ``ode23s``.

Where ``Σ_µµ`` is nearly singular the particle flow is stiff: the Jacobian ``∂f/∂y`` has a
few eigenvalues of size ``≈ 1/λ_min(Σ_µµ)`` while the trajectory moves on a scale of ``O(1)``,
and an explicit scheme's step is held at its stability limit ``≈ 2.5/|λ|_max`` (and, sitting
there, it keeps the stiff modes excited: the energy defect grows). The formula of Shampine
& Reichelt (*The MATLAB ODE Suite*, SIAM J. Sci. Comput. 18, 1997, §3), for an autonomous
``dy/dt = f(y)``, with ``d = 1/(2 + √2)``, ``e₃₂ = 6 + √2``, ``W = I − h d J``, ``J = ∂f/∂y``::

    F₀ = f(y);                 k₁ = W⁻¹ F₀
    F₁ = f(y + h k₁ / 2);      k₂ = W⁻¹ (F₁ − k₁) + k₁
    y₁ = y + h k₂              (order 2, L-stable: the stiff modes are damped, not amplified)
    F₂ = f(y₁);                k₃ = W⁻¹ (F₂ − e₃₂ (k₂ − F₁) − 2 (k₁ − F₀))
    error ≈ h/6 (k₁ − 2 k₂ + k₃)

``W`` is never formed: each solve is GMRES (:func:`~landscape.dynamics.krylov.gmres`) on
products ``J v`` (:meth:`~landscape.dynamics.flow.ParticleFlow.linearize`), to a true relative
residual ``krylov_rtol``, right-preconditioned by default by a deflation of ``J``'s largest
Ritz values harvested from the step's earlier solves (docs/theory.md §6.H; ``preconditioner =
"none"`` turns it off). A solve that does not converge within ``krylov_maxiter`` products
rejects the step (the step is halved), like a step whose error is too large.

Example:
    >>> import torch
    >>> lam = -1e6                                  # very stiff: explicit steps need h < 2.5e-6
    >>> def f(y): return lam * y
    >>> y = torch.ones(1, dtype=torch.float64)
    >>> step = rosenbrock23_step(f, lambda v: lam * v, y, f(y), 0.1)
    >>> abs(float(step.y)) < 1e-4                   # one step of 0.1 damps it (L-stability: R(z) ≈ −4.8/z)
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .config import PRECONDITIONERS
from .integrators import AdaptiveResult, StepSizeUnderflow, error_norm, step_factor
from .krylov import Deflation, gmres, harvest

__all__ = ["RosenbrockStep", "rosenbrock23_step", "adaptive_rosenbrock_step", "ORDER", "PRECONDITIONERS", "DEFLATION_RANK"]

Field = Callable[[torch.Tensor], torch.Tensor]
ORDER = 2
_D = 1.0 / (2.0 + math.sqrt(2.0))
_E32 = 6.0 + math.sqrt(2.0)
#: the most vectors a deflation keeps (Ritz values of ``J`` of largest modulus). On the paper
#: scenario (t ≤ 4) rank 40 cuts the products by ≈ 28% and rank 8 by 9%: its stiff cluster
#: holds about one eigenvalue per particle, so a small rank barely helps.
DEFLATION_RANK = 40


@dataclass(frozen=True)
class RosenbrockStep:
    """One step of :func:`rosenbrock23_step`.

    Attributes:
        y: the new state; error: the local error estimate (the state's shape).
        converged: whether all three linear solves reached ``krylov_rtol``.
        products: Jacobian-vector products used; residual: the largest relative residual.
        deflation: the deflation harvested from this step's first two solves (``preconditioner =
            "deflation"``; it serves later trials at the same ``y``), else the one given.
    """

    y: torch.Tensor
    error: torch.Tensor
    converged: bool
    products: int
    residual: float
    deflation: Deflation | None = None


def rosenbrock23_step(
    f: Field,
    jvp: Field,
    y: torch.Tensor,
    f0: torch.Tensor,
    h: float,
    krylov_rtol: float = 1e-8,
    krylov_maxiter: int = 200,
    preconditioner: str = "deflation",
    deflation: Deflation | None = None,
) -> RosenbrockStep:
    """One ``ode23s`` step from ``y`` with ``J v = jvp(v)`` (the Jacobian at ``y``).

    Args:
        f: the field; jvp: ``v ↦ J v``; y: the state, a tensor of any shape; f0: ``f(y)``.
        h: the step.
        krylov_rtol: relative residual of the GMRES solves with ``W = I − h d J``.
        krylov_maxiter: at most this many Arnoldi products per solve (plus one product per
            restart cycle for the true residual).
        preconditioner: ``none``, or ``deflation``: each solve is right-preconditioned by the
            :class:`~landscape.dynamics.krylov.Deflation` harvested from the earlier solves
            with this ``J`` (``deflation``, then this step's first two), rank :data:`DEFLATION_RANK`.
        deflation: a deflation harvested with this same ``J`` (an earlier trial at ``y``), or None.
    """
    if preconditioner not in PRECONDITIONERS:
        raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}.")
    shape = y.shape
    gamma = h * _D
    products = 0

    def apply(x: np.ndarray) -> np.ndarray:
        v = torch.as_tensor(x.reshape(shape), dtype=y.dtype, device=y.device)
        return (v - gamma * jvp(v)).reshape(-1).cpu().numpy()

    residuals: list[float] = []
    converged = True

    def solve(rhs: torch.Tensor, recycle: bool) -> torch.Tensor:
        nonlocal converged, products, deflation
        b = rhs.reshape(-1).cpu().numpy().astype(np.float64, copy=False)
        inverse = None if deflation is None else deflation.inverse(gamma)
        result = gmres(apply, b, krylov_rtol, krylov_maxiter, inverse)
        products += result.products
        residuals.append(result.residual)
        converged = converged and result.converged
        if recycle and preconditioner == "deflation" and result.space.shape[0]:
            deflation = harvest(result.space, (result.space - result.image) / gamma, DEFLATION_RANK, deflation)
        return torch.as_tensor(result.x.reshape(shape), dtype=y.dtype, device=y.device)

    k1 = solve(f0, True)
    f1 = f(y + (0.5 * h) * k1)
    k2 = solve(f1 - k1, True) + k1
    y1 = y + h * k2
    f2 = f(y1)
    k3 = solve(f2 - _E32 * (k2 - f1) - 2.0 * (k1 - f0), False)
    error = (h / 6.0) * (k1 - 2.0 * k2 + k3)
    return RosenbrockStep(y=y1, error=error, converged=converged, products=products, residual=max(residuals), deflation=deflation)


def adaptive_rosenbrock_step(
    f: Field,
    jvp: Field,
    y: torch.Tensor,
    f0: torch.Tensor,
    h: float,
    rtol: float,
    atol: float,
    mask: torch.Tensor,
    h_max: float = math.inf,
    h_min: float = 1e-14,
    krylov_rtol: float | None = None,
    krylov_maxiter: int = 200,
    preconditioner: str = "deflation",
) -> AdaptiveResult:
    """Rosenbrock steps until one is accepted (error norm ≤ 1), then proposes the next step.

    The error norm and the step rule are those of :func:`~landscape.dynamics.integrators.adaptive_step`
    (RMS over ``atol + rtol·|y|`` on ``mask``; ``h ← h · clip(0.9 · err^{−1/3}, 0.2, 5)``). A
    step whose linear solves did not converge is rejected and halved.

    Args:
        f, jvp, y, f0: as in :func:`rosenbrock23_step` (``jvp`` at ``y``); h: the trial step.
        rtol, atol: tolerances; mask: boolean tensor of ``y``'s shape, the components in the norm.
        h_max: the largest step allowed; h_min: below it :class:`StepSizeUnderflow` is raised.
        krylov_rtol: GMRES tolerance; None gives ``rtol / 10`` (a solve's error then adds
            at most a tenth of the tolerance to the local error while ``h‖k‖ ≤ |y|``).
        krylov_maxiter: at most this many Arnoldi products per solve.
        preconditioner: ``none`` or ``deflation`` (:func:`rosenbrock23_step`); a rejected
            trial hands its harvest to the next (same ``J``).

    Returns:
        the accepted step; ``AdaptiveResult.products`` counts the Jacobian-vector products
        of every trial.
    """
    krylov_rtol = rtol / 10 if krylov_rtol is None else krylov_rtol
    exponent = -1.0 / (ORDER + 1)
    h = min(h, h_max)
    rejected, products, deflation = 0, 0, None
    while True:
        if h < h_min:
            raise StepSizeUnderflow(f"adaptive step size fell to {h:.3e} (below {h_min:.1e}).")
        step = rosenbrock23_step(f, jvp, y, f0, h, krylov_rtol, krylov_maxiter, preconditioner, deflation)
        products, deflation = products + step.products, step.deflation
        norm = error_norm(step.error, y, step.y, rtol, atol, mask) if step.converged else math.inf
        if norm <= 1.0:
            return AdaptiveResult(step.y, h, h * step_factor(norm, exponent), rejected, products)
        rejected += 1
        h *= step_factor(norm, exponent) if math.isfinite(norm) else 0.5
