"""Building blocks shared by the claim checks: problems, training runs, trajectories.

Claims run the same public pipeline a user runs: a problem written as TOML, trained with
:func:`landscape.dynamics.train` into a run directory (kept as evidence), then read back.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landscape.dynamics import RunResult, read_trajectory, train
from landscape.dynamics.rundir import dumps_toml
from landscape.io.files import atomic_write_text, write_json
from landscape.io.problem import parse_problem
from landscape.landscape import AttentionLandscape
from landscape.model.measure import ParticleMeasure

from .records import json_safe

__all__ = [
    "EVIDENCE_MARKER",
    "TrainingRun",
    "check_evidence_dir",
    "prepare_evidence_dir",
    "landscape_of",
    "run_training",
    "write_evidence",
    "mean_and_stderr",
]

#: a file marking a folder as made by ``landscape verify`` (only such folders are replaced).
EVIDENCE_MARKER = ".landscape-verify"


def check_evidence_dir(path: Path) -> None:
    """Refuse ``path`` as a claim's evidence folder unless it is absent, empty or made by ``landscape verify``.

    Changes nothing: ``landscape verify`` calls it for every claim before the first runs.

    Raises:
        ValueError: ``path`` exists, is not empty and was not made by ``landscape verify``.
    """
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / EVIDENCE_MARKER).exists())):
        raise ValueError(f"{str(path)!r} exists and was not made by landscape verify; choose another --out.")


def prepare_evidence_dir(path: Path) -> Path:
    """Create ``path`` empty for a claim's evidence.

    A folder left by an earlier ``landscape verify`` (it holds :data:`EVIDENCE_MARKER`) is
    replaced; any other non-empty folder is refused (:func:`check_evidence_dir`), so nothing
    a user made is lost.

    Raises:
        ValueError: ``path`` exists, is not empty and was not made by ``landscape verify``.
    """
    check_evidence_dir(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    atomic_write_text(path / EVIDENCE_MARKER, "evidence written by landscape verify\n")
    return path




def landscape_of(problem: dict[str, Any]) -> AttentionLandscape:
    """The landscape of a problem given as tables."""
    return parse_problem(problem).landscape()


@dataclass(frozen=True)
class TrainingRun:
    """A finished training run: its result, trajectory columns, events and final measure."""

    result: RunResult
    trajectory: dict[str, np.ndarray]
    events: list[tuple[float, str]]
    final: ParticleMeasure | None
    directory: Path


def run_training(directory: Path, problem: dict[str, Any], init: dict[str, Any], dynamics: dict[str, Any]) -> TrainingRun:
    """Write ``problem.toml`` with ``[init]`` and ``[dynamics]`` into ``directory`` and train into ``directory/run``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "problem.toml"
    atomic_write_text(path, dumps_toml({**problem, "init": init, "dynamics": dynamics}))
    result = train(path, directory / "run")
    trajectory = read_trajectory(directory / "run")
    final = ParticleMeasure.load(directory / "run" / "final.npz") if result.completed else None
    return TrainingRun(result, trajectory.columns, trajectory.event_times(), final, directory / "run")


def write_evidence(directory: Path, name: str, payload: Any) -> str:
    """Write a JSON evidence file; returns its name relative to the claim folder's parent.

    Non-finite floats (NaN, ±inf, as a broken core may produce) are written as ``null``
    (:func:`~verification.records.json_safe`), so the evidence of a failing claim is kept.
    """
    write_json(directory / name, json_safe(payload))
    return f"{directory.name}/{name}"


def mean_and_stderr(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    if arr.size <= 1:
        return float(arr.mean()), 0.0
    return float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(arr.size))
