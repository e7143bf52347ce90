r"""Analysis shared by the claims and the reports: power-law fits, the unexplained fraction, and the one phase rule.

* :func:`fit_power`: least squares ``log y = b log x + a`` (every slope and exponent the claims fit).
* :func:`relative_excess`: ``(L − ½τ²)/(½ tr Σ_°°)``, the fraction of the signal left unexplained.
* :func:`find_plateaus` / :func:`find_phases`: plateaus, training phases and ``λ_min(Σ_µµ)``
  within each phase. Used by the ``conditioning`` claim (its verdict and table) and by the run
  reports (:mod:`reports.phases` adapts a ``trajectory.csv`` to it and draws nothing of its own),
  so a figure and a verdict never count phases differently.

**Plateau rule (log scale).** The loss of these runs falls as a staircase over decades, so the
rule judges it on ``y = ln(L − floor)`` (``floor`` default 0; the excess ``L − floor`` is
clipped below at ``10⁻¹²`` of its largest value so that a loss reaching numerical zero reads as
flat). Over a trajectory with times ``t`` (run length ``T = t_end − t_0``) and stationarity
residual ``g``:

* the *relative fall rate* at each row is ``r(t) = −[y(t + h/2) − y(t − h/2)]/h``, the secant
  of ``y`` (linearly interpolated between rows) over a window ``h = window · T`` (default 2% of
  the run) centred on the row and cut at the ends of the run; ``r`` is the fraction of the loss
  lost per time unit, whatever the loss's scale;
* the *drop ahead* of a row is ``R = max r`` over that row and every later one: the fastest fall
  still to come;
* a row is *quiet* when ``r ≤ rate_rel · R`` with ``R > 0`` (default ``rate_rel = 0.5``: the
  loss falls at most half as fast as the drop that will end the plateau) and the residual is
  small, ``g ≤ g_rel · max g`` (default 10% of the run's largest residual; a loose filter);
* a *plateau* is a maximal stretch of consecutive quiet rows lasting at least
  ``min_duration · T`` (default 3% of the run) whose last row lies above every later loss by at
  least ``ln(1 + loss_rel)`` in ``y`` (default ``loss_rel = 0.1``: the run leaves it by a fall
  of more than 10%).

A slow decay at the end of the run is therefore no plateau (nothing faster follows) and a
shoulder is one although the loss still falls there, as long as it falls at most ``rate_rel``
times as fast as the next drop.

**Settled.** The run has *settled* on the longest final stretch, lasting at least
``min_duration · T``, in which every window ``[t_i, t_i + min_duration · T]`` (the rows in it,
at least two) has a least-squares slope of ``y`` against ``t`` with ``|slope| · T ≤ settle_rel``
(default 0.1: at that rate the loss would change by less than about 10% over another run of
the same length). On a 12-unit run that is a fall slower than about 0.8% per time unit; a loss
still falling by several % per time unit has not settled, however small its change looks on a
linear scale. Plateaus stop where the settled stretch starts.

**Phases.** The boundaries are the ends of every plateau and every perturbation (kick) row (births
and deaths do not cut phases: the stochastic scheme has them at most steps);
a phase is the stretch between two consecutive boundaries with at least two rows. Within each phase the report gives ``max/min`` of
``λ_min(Σ_µµ)`` and the relative variation ``(max − min)/max``, beside the paper's
observation (docs/theory.md §10, claim 5) that it varied by at most 25% within each phase.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

__all__ = ["PAPER_VARIATION", "Phase", "Plateau", "find_phases", "find_plateaus", "fit_power", "relative_excess"]

#: the paper's observation: λ_min(Σ_µµ) varied by at most 25% within each training phase.
PAPER_VARIATION = 0.25


def fit_power(x, y) -> tuple[float, float, float]:
    """Least-squares fit ``log y = b log x + a`` to ``x``, ``y`` of shape (n,): ``(b, a, rms residual of log y)``.

    All three are NaN when there are fewer than two points or an ``x`` or ``y`` is not positive (no power law to fit).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got shapes {x.shape} and {y.shape}.")
    if x.size < 2 or not (np.all(x > 0) and np.all(y > 0)):
        return math.nan, math.nan, math.nan
    lx, ly = np.log(x), np.log(y)
    coef, *_ = np.linalg.lstsq(np.stack([lx, np.ones_like(lx)], 1), ly, rcond=None)
    resid = ly - (coef[0] * lx + coef[1])
    return float(coef[0]), float(coef[1]), float(np.sqrt(np.mean(resid**2)))


def relative_excess(loss: float | np.ndarray, noise: float, signal: float) -> float | np.ndarray:
    """``(L − ½τ²) / (½ tr Σ_°°)`` for ``noise`` = τ and ``signal`` = tr Σ_°°: the fraction of ``f°`` left unexplained.

    ``loss`` is a number or an array of any shape (elementwise).
    """
    return (loss - 0.5 * noise**2) / (0.5 * signal)


@dataclass(frozen=True)
class Plateau:
    """Rows ``start..stop`` (inclusive) of a trajectory where the loss stalls.

    Attributes:
        final: whether this is the final stretch where the run settled (not a plateau passed on the way).
    """

    start: int
    stop: int
    t_start: float
    t_stop: float
    loss: float
    final: bool


@dataclass(frozen=True)
class Phase:
    """Rows ``start..stop`` (inclusive) between two boundaries, with the range of ``λ_min(Σ_µµ)``."""

    start: int
    stop: int
    t_start: float
    t_stop: float
    sigma_lo: float
    sigma_hi: float

    @property
    def ratio(self) -> float:
        """``max/min`` of ``λ_min(Σ_µµ)`` over the phase."""
        return self.sigma_hi / self.sigma_lo if self.sigma_lo > 0 else float("inf")

    @property
    def variation(self) -> float:
        """``(max − min)/max`` of ``λ_min(Σ_µµ)`` over the phase (the paper's 25% measure)."""
        return (self.sigma_hi - self.sigma_lo) / self.sigma_hi if self.sigma_hi > 0 else float("nan")


def _fall_rate(t: np.ndarray, y: np.ndarray, h: float) -> np.ndarray:
    """``−[y(t + h/2) − y(t − h/2)]/h`` at each row, ``y`` interpolated linearly, the window cut at the run's ends."""
    lo, hi = np.clip(t - h / 2, t[0], t[-1]), np.clip(t + h / 2, t[0], t[-1])
    width = hi - lo
    fall = np.interp(lo, t, y) - np.interp(hi, t, y)
    return np.divide(fall, width, out=np.zeros_like(fall), where=width > 0)


def _settled_start(t: np.ndarray, y: np.ndarray, shortest: float, span: float, settle_rel: float) -> int:
    """The first row of the longest final stretch whose windows of ``shortest`` all have ``|slope of y| · span ≤ settle_rel``.

    Each window holds the rows in ``[t_i, t_i + shortest]`` (at least two); slopes are least-squares fits. ``len(t)`` if none.
    """
    n = len(t)
    u = t - t[0]
    c1, ct, cy, ctt, cty = (np.concatenate([[0.0], np.cumsum(v)]) for v in (np.ones(n), u, y, u * u, u * y))
    start = n
    for i in range(n - 2, -1, -1):
        if t[i] + shortest > t[-1]:
            continue
        j = max(int(np.searchsorted(t, t[i] + shortest, side="right")), i + 2)
        m, st, sy, stt, sty = (c[j] - c[i] for c in (c1, ct, cy, ctt, cty))
        den = m * stt - st * st
        slope = (m * sty - st * sy) / den if den > 0 else 0.0
        if abs(slope) * span > settle_rel:
            break
        start = i
    return start


def find_plateaus(
    time: np.ndarray,
    loss: np.ndarray,
    grad_norm: np.ndarray,
    g_rel: float = 0.1,
    loss_rel: float = 0.1,
    min_duration: float = 0.03,
    settle_rel: float = 0.1,
    rate_rel: float = 0.5,
    window: float = 0.02,
    floor: float = 0.0,
) -> list[Plateau]:
    """The plateaus of a trajectory by the rule of this module's docstring, in time order (a settled stretch last).

    Args:
        time, loss, grad_norm: arrays of shape (n,), the rows of ``trajectory.csv`` (``grad_norm``
            the stationarity residual); rows with a non-finite entry are skipped (and break a stretch).

    Raises:
        ValueError: the three arrays are not 1-D of one length.
    """
    t_all, loss_all, g_all = (np.asarray(v, dtype=float) for v in (time, loss, grad_norm))
    if not (t_all.ndim == 1 and t_all.shape == loss_all.shape == g_all.shape):
        raise ValueError(f"time, loss and grad_norm must be 1-D of one length, got shapes {t_all.shape}, {loss_all.shape}, {g_all.shape}.")
    ok = np.isfinite(t_all) & np.isfinite(loss_all) & np.isfinite(g_all)
    rows = np.flatnonzero(ok)
    if rows.size < 3:
        return []
    t, loss, g = t_all[rows], loss_all[rows], g_all[rows]
    span = float(t[-1] - t[0])
    if span <= 0 or np.any(np.diff(t) < 0):
        return []
    excess = loss - floor
    top = float(np.max(excess))
    if top <= 0:
        return []
    y = np.log(np.maximum(excess, 1e-12 * top))
    rate = _fall_rate(t, y, window * span)
    ahead = np.maximum.accumulate(rate[::-1])[::-1]
    shortest = min_duration * span
    settled = _settled_start(t, y, shortest, span, settle_rel)
    quiet = (ahead > 0) & (rate <= rate_rel * ahead) & (g <= g_rel * float(np.max(g)))
    quiet[settled:] = False
    # each row's contiguity in the full trajectory: a non-finite row between two quiet ones breaks the stretch
    gap = np.diff(rows) > 1
    found = []
    i, n = 0, len(t)
    while i < n:
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and quiet[j + 1] and not gap[j]:
            j += 1
        below = float(np.min(y[j + 1 :])) if j + 1 < n else np.inf
        if t[j] - t[i] >= shortest and y[j] - below >= np.log1p(loss_rel):
            found.append(Plateau(int(rows[i]), int(rows[j]), float(t[i]), float(t[j]), float(np.median(loss[i : j + 1])), False))
        i = j + 1
    if settled < n - 1:
        found.append(Plateau(int(rows[settled]), int(rows[-1]), float(t[settled]), float(t[-1]), float(np.median(loss[settled:])), True))
    return found


def find_phases(time: np.ndarray, sigma_min: np.ndarray, plateaus: list[Plateau], kicks: Iterable[int] = ()) -> list[Phase]:
    """The phases of a trajectory (between plateau ends and perturbations) with their ``λ_min(Σ_µµ)`` range.

    Args:
        time, sigma_min: arrays of shape (n,): the rows' times and ``λ_min(Σ_µµ)``.
        plateaus: from :func:`find_plateaus` on the same rows.
        kicks: indices of the rows that carry a perturbation.

    Raises:
        ValueError: ``time`` and ``sigma_min`` are not 1-D of one length.
    """
    t, sigma = np.asarray(time, dtype=float), np.asarray(sigma_min, dtype=float)
    if not (t.ndim == 1 and t.shape == sigma.shape):
        raise ValueError(f"time and sigma_min must be 1-D of one length, got shapes {t.shape} and {sigma.shape}.")
    cuts = {0, len(t), *kicks}
    for plateau in plateaus:
        cuts |= {plateau.start, plateau.stop + 1}
    edges = sorted(c for c in cuts if 0 <= c <= len(t))
    phases = []
    for lo, hi in pairwise(edges):
        values = sigma[lo:hi][np.isfinite(sigma[lo:hi])]
        if hi - lo >= 2 and values.size:
            phases.append(Phase(lo, hi - 1, float(t[lo]), float(t[hi - 1]), float(values.min()), float(values.max())))
    return phases
