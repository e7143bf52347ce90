"""Baselines: compare a run's metrics with a stored run, and say what regressed.

Each claim module declares ``TOLERANCES: dict[str, Tolerance]`` for its metrics; a metric
without one uses :data:`DEFAULT_TOLERANCE`. A *regression* is a verdict that got worse
(``pass`` → anything else, ``inconclusive`` → ``fail``) or a metric that moved outside its
tolerance in the direction its tolerance calls bad (``either`` by default).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from landscape.io.files import read_json, write_json

from .records import ClaimResult

__all__ = ["Tolerance", "DEFAULT_TOLERANCE", "Change", "compare", "load_baseline", "save_baseline"]

_RANK = {"pass": 2, "inconclusive": 1, "fail": 0}


@dataclass(frozen=True)
class Tolerance:
    """How far a metric may move: ``|new − old| ≤ atol + rtol·|old| + k·√(σ_new² + σ_old²)``.

    Attributes:
        rtol, atol: relative and absolute slack.
        sigmas: multiples of the combined standard errors also allowed (sampling noise).
        bad: which direction counts as a regression: ``"up"``, ``"down"`` or ``"either"``.
        compare: ``False`` makes the metric report-only: shown, never compared (for quantities
            that are ill-conditioned by construction, e.g. rounding-level residuals at a
            nearly singular ``Σ_µµ`` or times reached by an adaptive integrator there).
    """

    rtol: float = 1e-6
    atol: float = 1e-12
    sigmas: float = 4.0
    bad: str = "either"
    compare: bool = True


DEFAULT_TOLERANCE = Tolerance()


@dataclass(frozen=True)
class Change:
    """One difference between the run and the baseline."""

    claim: str
    metric: str
    old: float | str | None
    new: float | str | None
    regression: bool
    note: str

    def line(self) -> str:
        mark = "REGRESSION" if self.regression else "changed"
        return f"{mark}: {self.claim} {self.metric}: {self.old} -> {self.new} ({self.note})"


def compare(results: list[ClaimResult], baseline: list[ClaimResult], tolerances: dict[str, dict[str, Tolerance]]) -> list[Change]:
    """Every change of verdict or metric beyond tolerance, regressions flagged."""
    old_by_id = {r.id: r for r in baseline}
    changes: list[Change] = []
    for new in results:
        old = old_by_id.get(new.id)
        if old is None:
            changes.append(Change(new.id, "verdict", None, new.verdict, False, "not in the baseline"))
            continue
        if new.verdict != old.verdict:
            worse = _RANK[new.verdict] < _RANK[old.verdict]
            changes.append(Change(new.id, "verdict", old.verdict, new.verdict, worse, "verdict changed"))
        for name, metric in new.metrics.items():
            before = old.metrics.get(name)
            if before is None:
                continue
            tol = tolerances.get(new.id, {}).get(name, DEFAULT_TOLERANCE)
            change = _metric_change(new.id, name, before, metric, tol)
            if change is not None:
                changes.append(change)
        for name in old.metrics.keys() - new.metrics.keys():
            changes.append(Change(new.id, name, old.metrics[name].value, None, True, "metric disappeared"))
    return changes


def _metric_change(claim, name, before, after, tol: Tolerance) -> Change | None:
    if not tol.compare:
        return None
    old, new = before.value, after.value
    if not (math.isfinite(old) and math.isfinite(new)):
        if math.isfinite(old) == math.isfinite(new):
            return None
        return Change(claim, name, old, new, True, "finite value became undefined" if math.isfinite(old) else "now defined")
    slack = tol.atol + tol.rtol * abs(old) + tol.sigmas * math.hypot(before.uncertainty, after.uncertainty)
    if abs(new - old) <= slack:
        return None
    direction = "up" if new > old else "down"
    regression = tol.bad == "either" or tol.bad == direction
    return Change(claim, name, old, new, regression, f"moved {direction} by {abs(new - old):.3g} > tolerance {slack:.3g}")


def load_baseline(path: str | os.PathLike) -> list[ClaimResult]:
    """Read a baseline (a ``results.json``); ``ValueError`` naming the file on any problem."""
    path = Path(path)
    raw = read_json(path, "baseline")
    records = raw.get("results") if isinstance(raw, dict) else raw
    if not isinstance(records, list):
        raise ValueError(f"baseline file {str(path)!r} must hold a list of result records.")
    try:
        return [ClaimResult.from_dict(r) for r in records]
    except ValueError as err:
        raise ValueError(f"baseline file {str(path)!r}: {err}") from None


def save_baseline(path: str | os.PathLike, results: list[ClaimResult]) -> None:
    """Write ``results`` as a baseline, atomically."""
    write_json(path, [r.to_dict() for r in results])
