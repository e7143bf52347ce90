"""Plateaus and phases of a run's ``trajectory.csv``, by the one rule of :mod:`verification.analysis`.

The rule itself (plateaus, the settled stretch, phases and ``λ_min(Σ_µµ)`` within each) lives in
:mod:`verification.analysis`, which the ``conditioning`` claim judges with; this module only reads
it off a :class:`~landscape.dynamics.Trajectory` (its columns and its ``events`` cells), so the run
report's figures and tables count exactly the phases the claim counts.
"""

from __future__ import annotations

from landscape.dynamics import Trajectory
from verification import analysis as rule
from verification.analysis import PAPER_VARIATION, Phase, Plateau

__all__ = ["PAPER_VARIATION", "Phase", "Plateau", "event_times", "find_phases", "find_plateaus"]


def find_plateaus(traj: Trajectory, **params: float) -> list[Plateau]:
    """:func:`verification.analysis.find_plateaus` on the ``time``, ``loss`` and ``grad_norm`` columns (``params`` passed on)."""
    return rule.find_plateaus(traj["time"], traj["loss"], traj["grad_norm"], **params)


def find_phases(traj: Trajectory, plateaus: list[Plateau]) -> list[Phase]:
    """:func:`verification.analysis.find_phases` with the rows that carry a kick; ``[]`` without a ``sigma_min`` column."""
    if "sigma_min" not in traj:
        return []
    kicks = [i for i, cell in enumerate(traj.events) if any(entry.strip().startswith("kick") for entry in cell.split(";"))]
    return rule.find_phases(traj["time"], traj["sigma_min"], plateaus, kicks)


def event_times(traj: Trajectory) -> dict[str, list[float]]:
    """Times of each event kind: ``kick`` (perturbations), ``birth``, ``death`` (any other name kept as is).

    The ``events`` cell holds ``;``-separated entries such as ``kick:isotropic`` or ``death:3``.
    """
    out: dict[str, list[float]] = {}
    for time, cell in zip(traj["time"], traj.events, strict=True):
        for entry in filter(None, (e.strip() for e in cell.split(";"))):
            out.setdefault(entry.split(":", 1)[0], []).append(float(time))
    return out
