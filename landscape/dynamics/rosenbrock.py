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

``W`` is never formed: each solve is GMRES (``scipy.sparse.linalg.gmres``) on products
``J v`` (:meth:`~landscape.dynamics.flow.ParticleFlow.linearize`), to a relative residual
``krylov_rtol``. A solve that does not converge within ``krylov_maxiter`` products rejects
the step (the step is halved), like a step whose error is too large.

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
from scipy.sparse.linalg import LinearOperator, gmres

from .integrators import AdaptiveResult, StepSizeUnderflow, error_norm, step_factor

__all__ = ["RosenbrockStep", "rosenbrock23_step", "adaptive_rosenbrock_step", "ORDER"]

Field = Callable[[torch.Tensor], torch.Tensor]
ORDER = 2
_D = 1.0 / (2.0 + math.sqrt(2.0))
_E32 = 6.0 + math.sqrt(2.0)


@dataclass(frozen=True)
class RosenbrockStep:
    """One step of :func:`rosenbrock23_step`.

    Attributes:
        y: the new state; error: the local error estimate (the state's shape).
        converged: whether all three linear solves reached ``krylov_rtol``.
        products: Jacobian-vector products used; residual: the largest relative residual.
    """

    y: torch.Tensor
    error: torch.Tensor
    converged: bool
    products: int
    residual: float


def rosenbrock23_step(
    f: Field,
    jvp: Field,
    y: torch.Tensor,
    f0: torch.Tensor,
    h: float,
    krylov_rtol: float = 1e-8,
    krylov_maxiter: int = 200,
) -> RosenbrockStep:
    """One ``ode23s`` step from ``y`` with ``J v = jvp(v)`` (the Jacobian at ``y``).

    Args:
        f: the field; jvp: ``v ↦ J v``; y: the state, a tensor of any shape; f0: ``f(y)``.
        h: the step.
        krylov_rtol: relative residual of the GMRES solves with ``W = I − h d J``.
        krylov_maxiter: at most this many products per solve.
    """
    shape = y.shape
    products = 0

    def matvec(x: np.ndarray) -> np.ndarray:
        nonlocal products
        products += 1
        v = torch.as_tensor(np.asarray(x).reshape(shape), dtype=y.dtype, device=y.device)
        return (v - (h * _D) * jvp(v)).reshape(-1).cpu().numpy()

    n = y.numel()
    operator = LinearOperator((n, n), matvec=matvec, dtype=y.new_empty(0).cpu().numpy().dtype)
    residuals: list[float] = []
    converged = True

    def solve(rhs: torch.Tensor) -> torch.Tensor:
        nonlocal converged
        b = rhs.reshape(-1).cpu().numpy()
        norm = float(np.linalg.norm(b))
        if norm == 0.0:
            residuals.append(0.0)
            return torch.zeros_like(rhs)
        restart = min(krylov_maxiter, n)
        x, info = gmres(operator, b, rtol=krylov_rtol, atol=0.0, restart=restart, maxiter=max(1, krylov_maxiter // restart))
        residuals.append(float(np.linalg.norm(operator.matvec(x) - b)) / norm)
        converged = converged and info == 0 and residuals[-1] <= 10 * krylov_rtol
        return torch.as_tensor(x.reshape(shape), dtype=y.dtype, device=y.device)

    k1 = solve(f0)
    f1 = f(y + (0.5 * h) * k1)
    k2 = solve(f1 - k1) + k1
    y1 = y + h * k2
    f2 = f(y1)
    k3 = solve(f2 - _E32 * (k2 - f1) - 2.0 * (k1 - f0))
    error = (h / 6.0) * (k1 - 2.0 * k2 + k3)
    return RosenbrockStep(y=y1, error=error, converged=converged, products=products, residual=max(residuals))


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
        krylov_maxiter: at most this many products per solve.

    Returns:
        the accepted step; ``AdaptiveResult.products`` counts the Jacobian-vector products
        of every trial.
    """
    krylov_rtol = rtol / 10 if krylov_rtol is None else krylov_rtol
    exponent = -1.0 / (ORDER + 1)
    h = min(h, h_max)
    rejected, products = 0, 0
    while True:
        if h < h_min:
            raise StepSizeUnderflow(f"adaptive step size fell to {h:.3e} (below {h_min:.1e}).")
        step = rosenbrock23_step(f, jvp, y, f0, h, krylov_rtol, krylov_maxiter)
        products += step.products
        norm = error_norm(step.error, y, step.y, rtol, atol, mask) if step.converged else math.inf
        if norm <= 1.0:
            return AdaptiveResult(step.y, h, h * step_factor(norm, exponent), rejected, products)
        rejected += 1
        h *= step_factor(norm, exponent) if math.isfinite(norm) else 0.5
