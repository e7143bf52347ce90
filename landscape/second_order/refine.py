r"""Critical-point refinement: Newton–Krylov with MINRES on the singular Hessian (docs/theory.md §8).

From a near-critical measure (a plateau of training), each iteration solves
``H_W y = −P^{-1/2}∇F`` for the Wasserstein Hessian ``H_W = P^{-1/2}∇²F P^{-1/2}``
restricted to the complement of the symmetry directions (``∇F`` is orthogonal to them,
so the system is consistent there), by MINRES from ``y = 0`` — whose iterates stay in
the Krylov space of the right-hand side, so the step is the minimal-norm one in L²(µ).
The particles move by ``δθ = P^{-1/2} y``; a backtracking line search on the stationarity
residual ``g = ‖∇_θ δL/δµ‖_{L²(µ)} = ‖P^{-1/2}∇F‖`` accepts the step. Newton's method is
attracted by saddles as much as by minima, which is the point: it refines whatever
critical point is near.

Where the Hessian is singular beyond the symmetry directions — a particle split into two
copies leaves a flat direction of ``F`` that the symmetries do not remove — Newton's method
converges only linearly (the residual halves per step) and its residual meets the rounding
floor of ``∇F`` before a tight ``tol``. The iteration therefore also stops when the residual
fell by less than :data:`STALL_FACTOR` over the last :data:`STALL_WINDOW` iterations
(reason ``"stagnated"``), and every stop short of ``tol`` puts a warning in
:attr:`RefineResult.warnings` naming the residual reached, the reason and the observed rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse.linalg as spla
import torch
from torch.func import grad

from ..landscape import AttentionLandscape
from ..model.measure import ParticleMeasure
from .nullspace import symmetry_basis
from .operators import DeflatedOperator, WassersteinHessian

__all__ = ["RefineStep", "RefineResult", "refine", "residual", "STALL_WINDOW", "STALL_FACTOR"]

#: iterations over which the residual must fall by :data:`STALL_FACTOR` or the iteration stagnates.
STALL_WINDOW = 8
#: least decrease of the residual over :data:`STALL_WINDOW` iterations (a linear rate of 0.92 per step).
STALL_FACTOR = 0.5


@dataclass(frozen=True)
class RefineStep:
    """One Newton–Krylov iteration: the state it started from and the step it took."""

    iteration: int
    residual: float
    loss: float
    step_norm: float
    step_size: float
    minres_iterations: int


@dataclass
class RefineResult:
    """Outcome of :func:`refine`.

    Attributes:
        measure: the refined measure; residual: its stationarity residual; loss: its ``L_N``.
        converged: ``residual ≤ tol``; reason: why the iteration stopped.
        path: one :class:`RefineStep` per iteration (the last entry has no step).
        hvp_count: Hessian-vector products used.
        warnings: messages that must be shown: one when the residual did not reach ``tol``.
    """

    measure: ParticleMeasure
    residual: float
    loss: float
    converged: bool
    reason: str
    path: list[RefineStep] = field(default_factory=list)
    hvp_count: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "residual": self.residual,
            "loss": self.loss,
            "converged": self.converged,
            "reason": self.reason,
            "hvp_count": self.hvp_count,
            "path": [asdict(s) for s in self.path],
            "warnings": self.warnings,
        }


def residual(landscape: AttentionLandscape, measure: ParticleMeasure) -> tuple[float, float, torch.Tensor]:
    """``(g, L, P^{-1/2}∇F)``: stationarity residual, loss, and the scaled gradient (n,)."""
    objective, theta = landscape.objective(measure)
    scale = torch.as_tensor(np.repeat(np.asarray(measure.p) ** -0.5, measure.features + measure.dim), dtype=theta.dtype)
    scaled = scale.to(theta.device) * grad(objective)(theta)
    return float(torch.linalg.norm(scaled)), float(objective(theta)), scaled


def refine(
    landscape: AttentionLandscape,
    measure: ParticleMeasure,
    tol: float = 1e-12,
    maxiter: int = 30,
    armijo: float = 1e-4,
    min_step: float = 2.0**-20,
) -> RefineResult:
    """Newton–Krylov iteration towards the nearest critical point.

    Stops at ``g ≤ tol`` (``reason = "tolerance"``), at ``maxiter``, when the line search
    fails, or when ``g`` fell by less than :data:`STALL_FACTOR` over the last
    :data:`STALL_WINDOW` iterations (``"stagnated"``); each stop above ``tol`` puts a warning
    in the result's ``warnings``.

    Args:
        landscape: the landscape; measure: the starting measure (positive weights).
        tol: stop when the residual ``g ≤ tol``.
        maxiter: iteration cap.
        armijo: accept step size ``t`` when ``g_new ≤ (1 − armijo·t) g``.
        min_step: give up when the line search needs ``t`` below this.

    Raises:
        ValueError: on a non-positive ``tol`` or a measure that does not fit.
    """
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol!r}.")
    act = landscape.expectation.activation
    g, loss, scaled = residual(landscape, measure)
    path: list[RefineStep] = []
    hvps = 0
    reason = "maxiter"
    for it in range(maxiter):
        if g <= tol:
            reason = "tolerance"
            break
        op = WassersteinHessian(landscape, measure)
        basis, _ = symmetry_basis(measure, act.odd, act.homogeneous)
        system = DeflatedOperator(op, basis.to(op.dtype), shift=0.0)
        rhs = system.project(-scaled).cpu().numpy()
        count = [0]
        forcing = max(min(0.1, g), 1e-15)  # inexact Newton: relative MINRES tolerance min(0.1, g)
        y, _ = spla.minres(
            system.to_scipy(), rhs, rtol=forcing, maxiter=10 * op.size, callback=lambda _: count.__setitem__(0, count[0] + 1)
        )
        hvps += op.calls
        step = (op.scale * torch.as_tensor(y, dtype=op.dtype, device=op.device)).cpu().numpy()
        step_norm = float(np.linalg.norm(y))
        t, accepted = 1.0, None
        while t >= min_step:
            trial = measure.with_flat(measure.flat() + t * step)
            try:
                g_new, loss_new, scaled_new = residual(landscape, trial)
            except (ValueError, RuntimeError):  # Σ_µµ singular along the way: shorten
                g_new = np.inf
            if g_new <= (1 - armijo * t) * g:
                accepted = (trial, g_new, loss_new, scaled_new)
                break
            t *= 0.5
        path.append(RefineStep(it, g, loss, step_norm, t if accepted else 0.0, count[0]))
        if accepted is None:
            reason = "line search failed"
            break
        measure, g, loss, scaled = accepted
        if len(path) >= STALL_WINDOW and g > tol and g > STALL_FACTOR * path[-STALL_WINDOW].residual:
            reason = "stagnated"
            break
    else:
        if g <= tol:
            reason = "tolerance"
    path.append(RefineStep(len(path), g, loss, 0.0, 0.0, 0))
    warnings = [] if g <= tol else [_not_converged(g, tol, reason, path)]
    return RefineResult(measure, g, loss, g <= tol, reason, path, hvps, warnings)


def _not_converged(g: float, tol: float, reason: str, path: list[RefineStep]) -> str:
    """The warning of a refinement that stopped at residual ``g > tol``, with the rate per step it saw."""
    steps = len(path) - 1
    rate = (g / path[0].residual) ** (1.0 / steps) if steps and path[0].residual > 0 else 1.0
    why = {
        "maxiter": "the iteration cap refine_maxiter was reached",
        "stagnated": f"the residual fell by less than {STALL_FACTOR:g} over {STALL_WINDOW} iterations",
        "line search failed": "no step along the Newton direction lowered the residual",
    }[reason]
    return (
        f"refinement did not converge: residual {g:.3e} > refine_tol {tol:.1e} after {steps} iterations ({why}; "
        f"mean rate {rate:.2f} per step). A slow or stalled Newton iteration means a Hessian singular beyond the "
        "symmetries (e.g. split particles: merge coincident particles) or a residual at its rounding floor "
        "(raise refine_tol); the measure is not a critical point to tolerance."
    )
