"""The trajectory of a run: its columns (:data:`COLUMNS`), the in-memory :class:`Trajectory`
that :func:`~landscape.dynamics.simulate.simulate` returns, and :func:`read_trajectory`, the one
reader of the ``trajectory.csv`` that ``landscape train`` writes
(:meth:`~landscape.dynamics.rundir.RunDirectory.format_row`: ``repr`` of every float, so a
row read back is bit for bit the row computed).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.files import MAX_TABLE_BYTES, read_text

__all__ = ["COLUMNS", "Trajectory", "read_trajectory"]

#: trajectory columns; ``energy`` is L(µ, Γ) at finite η (else equal to ``loss`` = L_N(µ)),
#: ``energy_defect`` is ``E(t) − E(0) + ∫ dissipation`` (jumps from events excluded).
COLUMNS = (
    "step",
    "time",
    "loss",
    "energy",
    "grad_norm",
    "sigma_min",
    "sigma_cond",
    "entropy",
    "energy_defect",
    "step_size",
    "events",
)


@dataclass(frozen=True)
class Trajectory:
    """The recorded rows of a run.

    Attributes:
        columns: name → float64 array of shape (R,) for every numeric column present
            (``time``, ``loss`` and ``grad_norm`` always are; ``step`` too, as floats).
        events: the ``events`` cell of each row (``""`` where none; ``kind:detail`` items
            joined by ``;``), length R.
        result: how the run ended (a :class:`~landscape.dynamics.simulate.RunResult`), or None
            for a trajectory read from a file.
        final: the arrays of ``final.npz`` (``a``, ``w``, ``p``, and ``gamma`` at finite η) of
            a completed in-memory run, else None.
    """

    columns: dict[str, np.ndarray]
    events: list[str]
    result: Any = None
    final: dict[str, np.ndarray] | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def __len__(self) -> int:
        return len(self.events)

    def event_times(self) -> list[tuple[float, str]]:
        """Every event as ``(time of its row, event)``, in row order."""
        return [(float(t), e) for t, cell in zip(self.columns["time"], self.events, strict=True) for e in cell.split(";") if e]


def read_trajectory(path: str | Path) -> Trajectory:
    """Read a ``trajectory.csv`` (``path`` the file, or the run directory holding it).

    Empty cells read as NaN; a partial last line (a run killed mid-write) is dropped.

    Raises:
        ValueError: unreadable file, no ``time``/``loss``/``grad_norm`` column, no rows, or a
            cell that is not a number.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "trajectory.csv"
    text = read_text(path, "trajectory", MAX_TABLE_BYTES)
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as err:  # a NUL byte
        raise ValueError(f"trajectory {str(path)!r} is not a CSV table ({err}).") from None
    if not rows:
        raise ValueError(f"trajectory {str(path)!r} is empty.")
    header = [name.strip() for name in rows[0]]
    missing = [name for name in ("time", "loss", "grad_norm") if name not in header]
    if missing:
        raise ValueError(f"trajectory {str(path)!r} lacks column(s) {', '.join(missing)}.")
    body = [row for row in rows[1:] if len(row) == len(header)]
    if not body:
        raise ValueError(f"trajectory {str(path)!r} has no complete rows.")
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        if name == "events":
            continue
        try:
            columns[name] = np.array([float(row[j]) if row[j].strip() else math.nan for row in body])
        except ValueError:
            raise ValueError(f"trajectory {str(path)!r}: column {name!r} holds a value that is not a number.") from None
    events = [row[header.index("events")].strip() for row in body] if "events" in header else [""] * len(body)
    return Trajectory(columns, events)
