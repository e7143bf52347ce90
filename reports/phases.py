r"""Plateaus, training phases and the conditioning of ``Σ_µµ`` within each phase.

**Plateau rule.** Over a trajectory with times ``t``, loss ``L`` and stationarity residual
``g``, let ``ΔL = max L − min L`` and ``tol = loss_rel · ΔL`` (default 2% of the run's loss
range). The run has *settled* on the longest final stretch where
``L − min L ≤ min(tol, settle_rel · |min L|)`` (default 10%: a loss still decaying towards
zero on a log scale has not settled). A
*plateau* is a stretch of consecutive rows where the residual is small,
``g ≤ g_rel · max g`` (default 10% of the run's largest residual), and the loss varies by
at most ``tol``, that lies well above where the run ends, ``L − min L > 5·tol``; stretches
are grown greedily from their first row. Both must last at least
``min_duration · (t_end − t_0)`` (default 5% of the run).

**Phases.** The boundaries are the ends of every plateau and every perturbation (births
and deaths are marked but do not cut phases: the stochastic scheme has them at most steps);
a phase is the stretch between two consecutive boundaries with at least two rows. Within each phase the report gives ``max/min`` of
``λ_min(Σ_µµ)`` and the relative variation ``(max − min)/max``, beside the paper's
observation (THEORY.md §10, claim 5) that it varied by at most 25% within each phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from .inputs import Trajectory

__all__ = ["PAPER_VARIATION", "Phase", "Plateau", "event_times", "find_phases", "find_plateaus"]

#: the paper's observation: λ_min(Σ_µµ) varied by at most 25% within each training phase.
PAPER_VARIATION = 0.25


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


def find_plateaus(
    traj: Trajectory, g_rel: float = 0.1, loss_rel: float = 0.02, min_duration: float = 0.05, settle_rel: float = 0.1
) -> list[Plateau]:
    """The plateaus of ``traj`` by the rule of this module's docstring, in time order."""
    t, loss, g = traj["time"], traj["loss"], traj["grad_norm"]
    ok = np.isfinite(t) & np.isfinite(loss) & np.isfinite(g)
    if ok.sum() < 3:
        return []
    span, floor = float(t[ok][-1] - t[ok][0]), float(np.min(loss[ok]))
    tol = loss_rel * float(np.ptp(loss[ok]))
    if span <= 0 or tol <= 0:
        return []
    quiet = ok & (g <= g_rel * float(np.max(g[ok]))) & (loss - floor > 5 * tol)
    found = []
    i, n = 0, len(t)
    while i < n:
        if not quiet[i]:
            i += 1
            continue
        lo = hi = loss[i]
        j = i
        while j + 1 < n and quiet[j + 1] and max(hi, loss[j + 1]) - min(lo, loss[j + 1]) <= tol:
            j += 1
            lo, hi = min(lo, loss[j]), max(hi, loss[j])
        if t[j] - t[i] >= min_duration * span:
            found.append(Plateau(i, j, float(t[i]), float(t[j]), float(np.median(loss[i : j + 1])), False))
        i = j + 1
    near = ok & (loss - floor <= min(tol, settle_rel * abs(floor)))
    start = n
    while start > 0 and near[start - 1]:
        start -= 1
    if start < n - 1 and t[n - 1] - t[start] >= min_duration * span:
        found.append(Plateau(start, n - 1, float(t[start]), float(t[n - 1]), float(np.median(loss[start:])), True))
    return found


def event_times(traj: Trajectory) -> dict[str, list[float]]:
    """Times of each event kind: ``kick`` (perturbations), ``birth``, ``death`` (any other name kept as is).

    The ``events`` cell holds ``;``-separated entries such as ``kick:isotropic`` or ``death:3``.
    """
    out: dict[str, list[float]] = {}
    for time, cell in zip(traj["time"], traj.events, strict=True):
        for entry in filter(None, (e.strip() for e in cell.split(";"))):
            out.setdefault(entry.split(":", 1)[0], []).append(float(time))
    return out


def find_phases(traj: Trajectory, plateaus: list[Plateau]) -> list[Phase]:
    """The phases of ``traj`` (between plateau ends and perturbations) with their ``λ_min(Σ_µµ)`` range.

    Returns an empty list when the trajectory has no ``sigma_min`` column.
    """
    if "sigma_min" not in traj:
        return []
    t, sigma = traj["time"], traj["sigma_min"]
    cuts = {0, len(t)}
    for plateau in plateaus:
        cuts |= {plateau.start, plateau.stop + 1}
    for i, cell in enumerate(traj.events):
        if any(entry.strip().startswith("kick") for entry in cell.split(";")):
            cuts.add(i)
    edges = sorted(c for c in cuts if 0 <= c <= len(t))
    phases = []
    for lo, hi in pairwise(edges):
        values = sigma[lo:hi][np.isfinite(sigma[lo:hi])]
        if hi - lo >= 2 and values.size:
            phases.append(Phase(lo, hi - 1, float(t[lo]), float(t[hi - 1]), float(values.min()), float(values.max())))
    return phases
