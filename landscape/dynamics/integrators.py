r"""Explicit Runge–Kutta integrators: fixed step (Euler, Heun, RK4) and adaptive embedded pairs.

A :class:`Tableau` is a Butcher tableau; :func:`rk_step` takes one step given the first
stage ``k1 = f(y)`` (the caller has it already, with its diagnostics). The adaptive pairs
(Bogacki–Shampine ``rk23``, Dormand–Prince ``dopri5``) estimate the local error by the
difference of the two embedded solutions and control the step with the standard rule
``h ← h · clip(0.9 · err^{−1/(q+1)}, 0.2, 5)`` (Hairer, Nørsett & Wanner, *Solving ODEs I*,
§II.4), ``q`` the lower order, ``err`` the RMS of the error over ``atol + rtol·|y|``.

Example:
    >>> import torch
    >>> y1, _ = rk_step(lambda y: -y, torch.ones(1), -torch.ones(1), 0.1, TABLEAUS["rk4"])
    >>> abs(float(y1) - math.exp(-0.1)) < 1e-6
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Tableau", "TABLEAUS", "rk_step", "adaptive_step", "AdaptiveResult", "StepSizeUnderflow"]

Field = Callable[[torch.Tensor], torch.Tensor]


class StepSizeUnderflow(ArithmeticError):
    """The adaptive step fell below the smallest step the time can resolve."""


@dataclass(frozen=True)
class Tableau:
    """An explicit Butcher tableau.

    Attributes:
        a: lower-triangular stage coefficients, row ``i`` has ``i`` entries.
        b: weights of the solution (order ``order``).
        b_low: weights of the embedded solution (order ``order − 1``), or None.
        order: the order of the solution.
    """

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_low: tuple[float, ...] | None
    order: int


TABLEAUS: dict[str, Tableau] = {
    "euler": Tableau(a=((),), b=(1.0,), b_low=None, order=1),
    "heun": Tableau(a=((), (1.0,)), b=(0.5, 0.5), b_low=None, order=2),
    "rk4": Tableau(a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), b=(1 / 6, 1 / 3, 1 / 3, 1 / 6), b_low=None, order=4),
    "rk23": Tableau(
        a=((), (1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
        b=(2 / 9, 1 / 3, 4 / 9, 0.0),
        b_low=(7 / 24, 1 / 4, 1 / 3, 1 / 8),
        order=3,
    ),
    "dopri5": Tableau(
        a=(
            (),
            (1 / 5,),
            (3 / 40, 9 / 40),
            (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
        ),
        b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
        b_low=(5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40),
        order=5,
    ),
}


def rk_step(f: Field, y: torch.Tensor, k1: torch.Tensor, h: float, tableau: Tableau) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One explicit Runge–Kutta step.

    Args:
        f: the field; y: the state (any shape); k1: ``f(y)``; h: the step; tableau: the scheme.

    Returns:
        ``(y_new, error)``: the new state and, for an embedded pair, the error estimate
        ``y_new − y_low`` (else None).
    """
    stages = [k1]
    for row in tableau.a[1:]:
        increment = sum(coef * k for coef, k in zip(row, stages, strict=True) if coef != 0.0)
        stages.append(f(y + h * increment))
    y_new = y + h * sum(coef * k for coef, k in zip(tableau.b, stages, strict=True) if coef != 0.0)
    if tableau.b_low is None:
        return y_new, None
    error = h * sum((hi - lo) * k for hi, lo, k in zip(tableau.b, tableau.b_low, stages, strict=True) if hi != lo)
    return y_new, error


@dataclass(frozen=True)
class AdaptiveResult:
    """An accepted adaptive step: the new state, the step taken, the next trial step, the
    rejections and (implicit schemes only) the Jacobian-vector products spent on every trial."""

    y: torch.Tensor
    h: float
    h_next: float
    rejected: int
    products: int = 0


def adaptive_step(
    f: Field,
    y: torch.Tensor,
    k1: torch.Tensor,
    h: float,
    tableau: Tableau,
    rtol: float,
    atol: float,
    mask: torch.Tensor,
    h_max: float = math.inf,
    h_min: float = 1e-14,
) -> AdaptiveResult:
    """Steps until one is accepted (error norm ≤ 1), then proposes the next step.

    Args:
        f, y, k1, tableau: as in :func:`rk_step` (``tableau`` must be an embedded pair).
        h: the trial step.
        rtol, atol: tolerances; mask: boolean tensor of ``y``'s shape, the components in the norm.
        h_max: the largest step allowed (to land on a final time).
        h_min: below this step :class:`StepSizeUnderflow` is raised.

    Raises:
        ValueError: when the tableau has no embedded solution.
        StepSizeUnderflow: when the step shrinks below ``h_min``.
    """
    if tableau.b_low is None:
        raise ValueError("adaptive_step needs an embedded pair (rk23 or dopri5).")
    exponent = -1.0 / tableau.order  # 1/(q+1), q = order − 1
    h = min(h, h_max)
    rejected = 0
    while True:
        if h < h_min:
            raise StepSizeUnderflow(f"adaptive step size fell to {h:.3e} (below {h_min:.1e}).")
        y_new, error = rk_step(f, y, k1, h, tableau)
        scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        norm = float(torch.sqrt(torch.mean((error[mask] / scale[mask]) ** 2)))
        if math.isfinite(norm) and norm <= 1.0:
            factor = 5.0 if norm == 0.0 else min(5.0, max(0.2, 0.9 * norm**exponent))
            return AdaptiveResult(y_new, h, h * factor, rejected)
        rejected += 1
        factor = 0.2 if not math.isfinite(norm) else max(0.2, 0.9 * norm**exponent)
        h *= factor
