r"""Explicit Runge–Kutta integrators: fixed step (Euler, Heun, RK4) and adaptive embedded pairs.

A :class:`Tableau` is a Butcher tableau; :func:`rk_step` takes one step given the first
stage ``k1 = f(y)`` (the caller has it already, with its diagnostics). The adaptive pairs
(Bogacki–Shampine ``rk23``, Dormand–Prince ``dopri5``) estimate the local error by the
difference of the two embedded solutions and control the step with the standard rule
``h ← h · clip(0.9 · err^{−1/(q+1)}, 0.2, 5)`` (Hairer, Nørsett & Wanner, *Solving ODEs I*,
§II.4), ``q`` the lower order, ``err`` the RMS of the error over ``atol + rtol·|y|``.

Stiffness detection (Shampine 1977; Hairer & Wanner, *Solving ODEs II*, §IV.2): a combination
``Σ d_j k_j`` of stages with ``Σ d_j = 0`` equals ``J · Σ d_j Y_j`` for a linear field (``Y_j``
the stage points), so ``ρ = ‖Σ d_j k_j‖ / ‖Σ d_j Y_j‖`` estimates ``|λ|`` of the Jacobian along
``Σ d_j Y_j`` — the stiff direction when the step is stability-limited, provided the smooth
modes contribute little to ``Σ d_j Y_j``. For ``dopri5`` ``d`` is Hairer's ``k₇ − k₆`` (both
stages at ``c = 1``). For ``rk23`` the last two stages are at ``c = ¾`` and ``1``: their points
differ by ``O(h)`` on the smooth modes, which swamps the stiff mode (held at the error tolerance)
— on ``y' = diag(−1, −1e4) y`` at the limit that estimate gives ``h·ρ`` ≈ 0 instead of 2.51,
and the stiff training test goes unflagged. ``rk23`` uses ``d = (⅓, 0, −4/3, 1)`` (``Tableau.probe``),
the combination (unique up to scale) with ``Σ d_j Y_j = (hλ)³ y / 6`` on ``y' = λy``: ``O(h³)`` on smooth modes,
exact ``|λ|`` on each linear mode. An accepted :func:`adaptive_step` reports ``h·ρ`` over the
method's real stability boundary (:func:`real_stability_boundary`: 2.5127 for ``rk23``, 3.3066
for ``dopri5``) as ``AdaptiveResult.stiffness``, from stages already computed (no extra field
evaluation). A ratio near 1 means the step is held by stability, not accuracy (the controller
oscillates around 1 there); :data:`STIFF_RATIO` is the threshold the driver uses.

Example:
    >>> import torch
    >>> y1, _ = rk_step(lambda y: -y, torch.ones(1), -torch.ones(1), 0.1, TABLEAUS["rk4"])
    >>> abs(float(y1) - math.exp(-0.1)) < 1e-6
    True
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = [
    "Tableau",
    "TABLEAUS",
    "rk_step",
    "adaptive_step",
    "AdaptiveResult",
    "StepSizeUnderflow",
    "error_norm",
    "step_factor",
    "real_stability_boundary",
    "stability_polynomial",
    "STIFF_RATIO",
    "H_MIN",
]

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
        probe: stage weights ``d`` (``Σ d_j = 0``) of the stiffness estimate, or None (no estimate).
    """

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_low: tuple[float, ...] | None
    order: int
    probe: tuple[float, ...] | None = None


TABLEAUS: dict[str, Tableau] = {
    "euler": Tableau(a=((),), b=(1.0,), b_low=None, order=1),
    "heun": Tableau(a=((), (1.0,)), b=(0.5, 0.5), b_low=None, order=2),
    "rk4": Tableau(a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), b=(1 / 6, 1 / 3, 1 / 3, 1 / 6), b_low=None, order=4),
    "rk23": Tableau(
        a=((), (1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
        b=(2 / 9, 1 / 3, 4 / 9, 0.0),
        b_low=(7 / 24, 1 / 4, 1 / 3, 1 / 8),
        order=3,
        probe=(1 / 3, 0.0, -4 / 3, 1.0),  # Σ d_j Y_j = h³λ³y/6 on y' = λy: O(h³) on smooth modes
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
        probe=(0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 1.0),  # k₇ − k₆ (Hairer's DOPRI5)
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
    y_new, error, _ = _rk_stages(f, y, k1, h, tableau)
    return y_new, error


def _rk_stages(f: Field, y: torch.Tensor, k1: torch.Tensor, h: float, tableau: Tableau):
    """:func:`rk_step` that also hands back the list of stages ``k_1 … k_s``."""
    stages = [k1]
    for row in tableau.a[1:]:
        increment = sum(coef * k for coef, k in zip(row, stages, strict=True) if coef != 0.0)
        stages.append(f(y + h * increment))
    y_new = y + h * sum(coef * k for coef, k in zip(tableau.b, stages, strict=True) if coef != 0.0)
    if tableau.b_low is None:
        return y_new, None, stages
    error = h * sum((hi - lo) * k for hi, lo, k in zip(tableau.b, tableau.b_low, stages, strict=True) if hi != lo)
    return y_new, error, stages


#: the smallest adaptive step before :class:`StepSizeUnderflow` (the default ``h_min``).
H_MIN = 1e-14

STIFF_RATIO = 0.8
"""``h·ρ`` at or above this fraction of the real stability boundary counts as a stability-limited
step. At the limit the controller oscillates around the boundary (ratios ≈ 0.8–1.1 on
``y' = −10⁴ y``), while an accuracy-limited step on a smooth flow sits far below (≈ 0.1 for the
rotation at rtol = 1e-4; a fraction of the boundary that shrinks with the tolerance)."""


def stability_polynomial(tableau: Tableau) -> tuple[float, ...]:
    """Coefficients ``(1, b·1, b·A1, b·A²1, …)`` of ``R(z) = 1 + z bᵀ(I − zA)⁻¹1`` (explicit: a polynomial)."""
    s = len(tableau.b)
    a = [list(row) + [0.0] * (s - len(row)) for row in tableau.a]
    vector = [1.0] * s
    coefficients = [1.0]
    for _ in range(s):
        coefficients.append(sum(bi * vi for bi, vi in zip(tableau.b, vector, strict=True)))
        vector = [sum(a[i][j] * vector[j] for j in range(s)) for i in range(s)]
    while len(coefficients) > 1 and abs(coefficients[-1]) < 1e-15:
        coefficients.pop()
    return tuple(coefficients)


@functools.lru_cache(maxsize=None)
def real_stability_boundary(tableau: Tableau) -> float:
    """The ``x > 0`` where ``|R(−x)|`` first exceeds 1: the step of a real negative eigenvalue
    ``λ`` is stable for ``h|λ| ≤ x`` (2.5127 for ``rk23``, 3.3066 for ``dopri5``, 2 for Euler)."""
    coefficients = stability_polynomial(tableau)

    def excess(x: float) -> float:
        return abs(sum(c * (-x) ** n for n, c in enumerate(coefficients))) - 1.0

    lo, hi = 1e-3, 1e-3
    while excess(hi) <= 0.0:  # |R(−x)| < 1 just right of 0 for a consistent scheme
        lo, hi = hi, hi + 0.01
        if hi > 100.0:
            return math.inf
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) <= 0.0 else (lo, mid)
    return lo


def _stiffness(stages: list[torch.Tensor], h: float, tableau: Tableau, mask: torch.Tensor) -> float | None:
    """``h·ρ / boundary`` from the stage combination ``tableau.probe``, or None when its points coincide."""
    d = tableau.probe
    if d is None:
        return None
    s = len(stages)
    a = [list(row) + [0.0] * (s - len(row)) for row in tableau.a]
    weights = [sum(d[j] * a[j][l] for j in range(s)) for l in range(s)]  # Σ_j d_j Y_j = h Σ_l (dᵀA)_l k_l
    gap = h * sum(w * k for w, k in zip(weights, stages, strict=True) if w != 0.0)
    change = sum(c * k for c, k in zip(d, stages, strict=True) if c != 0.0)
    distance = float(torch.linalg.vector_norm(gap[mask]))
    difference = float(torch.linalg.vector_norm(change[mask]))
    if not (distance > 0.0 and math.isfinite(distance) and math.isfinite(difference)):
        return None
    return h * difference / distance / real_stability_boundary(tableau)


@dataclass(frozen=True)
class AdaptiveResult:
    """An accepted adaptive step: the new state, the step taken, the next trial step, the
    rejections, (implicit schemes only) the Jacobian-vector products spent on every trial and
    (explicit pairs only) the stiffness ratio ``h·ρ / boundary`` of the accepted step — ≈ 1 when
    the step is held at its stability limit; None where the scheme gives no estimate."""

    y: torch.Tensor
    h: float
    h_next: float
    rejected: int
    products: int = 0
    stiffness: float | None = None


def error_norm(error: torch.Tensor, y: torch.Tensor, y_new: torch.Tensor, rtol: float, atol: float, mask: torch.Tensor) -> float:
    """RMS over ``mask`` of ``error / (atol + rtol·max(|y|, |y_new|))``; ``inf`` when not finite."""
    scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
    norm = float(torch.sqrt(torch.mean((error[mask] / scale[mask]) ** 2)))
    return norm if math.isfinite(norm) else math.inf


def step_factor(norm: float, exponent: float) -> float:
    """The step rule ``clip(0.9 · norm^exponent, 0.2, 5)`` (5 at ``norm = 0``, 0.2 at ``norm = inf``)."""
    if norm == 0.0:
        return 5.0
    if not math.isfinite(norm):
        return 0.2
    return min(5.0, max(0.2, 0.9 * norm**exponent))


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
    h_min: float = H_MIN,
) -> AdaptiveResult:
    """Steps until one is accepted (error norm ≤ 1), then proposes the next step.

    The result carries the stiffness ratio of the accepted step (see the module docstring),
    measured on the components in ``mask``.

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
        y_new, error, stages = _rk_stages(f, y, k1, h, tableau)
        norm = error_norm(error, y, y_new, rtol, atol, mask)
        if norm <= 1.0:
            return AdaptiveResult(y_new, h, h * step_factor(norm, exponent), rejected, stiffness=_stiffness(stages, h, tableau, mask))
        rejected += 1
        h *= step_factor(norm, exponent)
