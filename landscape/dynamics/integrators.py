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

Every function here takes states either as torch tensors or as numpy arrays (the same
arithmetic, in the same order, on either): the driver integrates the fast engine's numpy field
on numpy arrays, where one elementwise operation on a tiny state costs a fraction of torch's
dispatch, and the reference engine's on tensors (any device and dtype).

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

import numpy as np
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

#: a state or a field value: a torch tensor, or a numpy array (see the module docstring).
Array = torch.Tensor | np.ndarray
Field = Callable[[Array], Array]


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


def rk_step(f: Field, y: Array, k1: Array, h: float, tableau: Tableau) -> tuple[Array, Array | None]:
    """One explicit Runge–Kutta step.

    Args:
        f: the field; y: the state (any shape; a tensor, or a numpy array with ``f`` on arrays);
        k1: ``f(y)``; h: the step; tableau: the scheme.

    Returns:
        ``(y_new, error)``: the new state and, for an embedded pair, the error estimate
        ``y_new − y_low`` (else None).
    """
    y_new, error, _ = _rk_stages(f, y, k1, h, tableau)
    return y_new, error


def _rk_stages(f: Field, y: Array, k1: Array, h: float, tableau: Tableau):
    """:func:`rk_step` that also hands back the list of stages ``k_1 … k_s``."""
    with np.errstate(over="ignore", invalid="ignore"):  # a blow-up on arrays ends as on tensors: non-finite, no warning
        stages = [k1]
        for row in tableau.a[1:]:
            stages.append(f(y + h * _combination(row, stages)))
        y_new = y + h * _combination(tableau.b, stages)
        if tableau.b_low is None:
            return y_new, None, stages
        return y_new, h * _combination(_error_weights(tableau), stages), stages


def _combination(coefficients: tuple[float, ...], stages: list[Array]) -> Array:
    """``Σ_j c_j k_j`` over the nonzero ``c_j``, added in order (``1·k`` is ``k``); at least one ``c_j ≠ 0``."""
    total = None
    for c, k in zip(coefficients, stages, strict=True):
        if c != 0.0:
            term = k if c == 1.0 else c * k
            total = term if total is None else total + term
    return total


@functools.lru_cache(maxsize=None)
def _error_weights(tableau: Tableau) -> tuple[float, ...]:
    """``b − b_low``: the stage weights of the error estimate ``y_new − y_low`` (over ``h``)."""
    return tuple(hi - lo for hi, lo in zip(tableau.b, tableau.b_low, strict=True))


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


@functools.lru_cache(maxsize=None)
def _probe_weights(tableau: Tableau) -> tuple[float, ...]:
    """``dᵀA``: the stage weights of ``Σ_j d_j Y_j = h Σ_l (dᵀA)_l k_l`` (``d = tableau.probe``)."""
    d = tableau.probe
    s = len(tableau.b)
    a = [list(row) + [0.0] * (s - len(row)) for row in tableau.a]
    return tuple(sum(d[j] * a[j][l] for j in range(s)) for l in range(s))


def _norm(x: Array) -> float:
    """The Euclidean norm of the vector ``x`` (a tensor or a numpy array): ``√(x·x)``."""
    return math.sqrt(float(x @ x))


def _stiffness(stages: list[Array], h: float, tableau: Tableau, mask: Array) -> float | None:
    """``h·ρ / boundary`` from the stage combination ``tableau.probe``, or None when its points coincide."""
    d = tableau.probe
    if d is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow gives no estimate, not a warning
        gap = h * _combination(_probe_weights(tableau), stages)
        change = _combination(d, stages)
        distance = _norm(gap[mask])
        difference = _norm(change[mask])
    if not (distance > 0.0 and math.isfinite(distance) and math.isfinite(difference)):
        return None
    return h * difference / distance / real_stability_boundary(tableau)


@dataclass(frozen=True)
class AdaptiveResult:
    """An accepted adaptive step: the new state, the step taken, the next trial step, the
    rejections, (implicit schemes only) the Jacobian-vector products spent on every trial and
    (explicit pairs only) the stiffness ratio ``h·ρ / boundary`` of the accepted step — ≈ 1 when
    the step is held at its stability limit; None where the scheme gives no estimate."""

    y: Array
    h: float
    h_next: float
    rejected: int
    products: int = 0
    stiffness: float | None = None


def error_norm(error: Array, y: Array, y_new: Array, rtol: float, atol: float, mask: Array) -> float:
    """RMS over ``mask`` of ``error / (atol + rtol·max(|y|, |y_new|))``; ``inf`` when not finite.

    All four arrays are torch tensors, or all numpy arrays (``mask`` boolean, of ``y``'s shape).
    """
    maximum = np.maximum if isinstance(y, np.ndarray) else torch.maximum
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite state is answered by inf, not a warning
        scale = atol + rtol * maximum(abs(y), abs(y_new))
        ratio = error[mask] / scale[mask]
        norm = _norm(ratio) / math.sqrt(ratio.shape[0])
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
    y: Array,
    k1: Array,
    h: float,
    tableau: Tableau,
    rtol: float,
    atol: float,
    mask: Array,
    h_max: float = math.inf,
    h_min: float = H_MIN,
) -> AdaptiveResult:
    """Steps until one is accepted (error norm ≤ 1), then proposes the next step.

    The result carries the stiffness ratio of the accepted step (see the module docstring),
    measured on the components in ``mask``.

    Args:
        f, y, k1, tableau: as in :func:`rk_step` (``tableau`` must be an embedded pair).
        h: the trial step.
        rtol, atol: tolerances; mask: boolean array (tensor or numpy, as ``y``) of ``y``'s shape,
            the components in the norm.
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
