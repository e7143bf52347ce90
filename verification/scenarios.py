"""Building blocks shared by the claim checks: problems, training runs, trajectories.

Claims run the same public pipeline a user runs: a problem written as TOML, trained with
:func:`landscape.dynamics.train` into a run directory (kept as evidence), then read back.
"""

from __future__ import annotations

import csv
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landscape.config import parse_problem
from landscape.dynamics import RunResult, train
from landscape.dynamics.rundir import dumps_toml
from landscape.io import atomic_write_text, write_json
from landscape.measure import ParticleMeasure
from landscape.problem import AttentionLandscape

from .records import json_safe

__all__ = [
    "EVIDENCE_MARKER",
    "TrainingRun",
    "check_evidence_dir",
    "orthogonal_teacher_problem",
    "dead_neuron_saddle",
    "prepare_evidence_dir",
    "landscape_of",
    "run_training",
    "read_trajectory",
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
    (path / EVIDENCE_MARKER).write_text("evidence written by landscape verify\n", encoding="utf-8")
    return path


def orthogonal_teacher_problem(
    k0: int,
    d: int,
    scale: float = 1.5,
    activation: str = "erf",
    noise: float = 0.0,
    prompt_length: int | str = "inf",
    features: int | None = None,
) -> dict[str, Any]:
    """The problem tables of docs/theory.md §9: ``u_l = s e_l``, ``c_l = e_l``, Gaussian inputs, exact expectations."""
    eye = np.eye(max(k0, d))
    return {
        "input": {"law": "gaussian", "dim": d},
        "teacher": {"activation": activation, "c": np.eye(k0).tolist(), "u": (scale * eye[:k0, :d]).tolist()},
        "model": {"activation": activation, "features": features or k0},
        "task": {"noise": noise, "prompt_length": prompt_length},
        "expectation": {"method": "exact"},
    }


def dead_neuron_saddle(k0: int, d: int, scale: float = 1.5, dead: int = 1) -> ParticleMeasure:
    """docs/theory.md §9: ``M = k = k°``; ``k° − dead`` particles on teacher neurons, the rest at ``s e_m``, ``m > k°``."""
    if not 1 <= dead < k0 or k0 + dead > d:
        raise ValueError(f"need 1 ≤ dead < k° and k° + dead ≤ d, got dead = {dead}, k° = {k0}, d = {d}.")
    rows = [*range(k0 - dead), *range(k0, k0 + dead)]
    return ParticleMeasure(np.eye(k0), scale * np.eye(d)[rows])


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
    trajectory, events = read_trajectory(directory / "run")
    final = ParticleMeasure.load(directory / "run" / "final.npz") if result.completed else None
    return TrainingRun(result, trajectory, events, final, directory / "run")


def read_trajectory(run_dir: Path) -> tuple[dict[str, np.ndarray], list[tuple[float, str]]]:
    """Numeric columns of ``trajectory.csv`` and the ``(time, event)`` list."""
    with open(run_dir / "trajectory.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = {}
    for name in rows[0].keys() if rows else ():
        if name == "events":
            continue
        columns[name] = np.array([float(r[name]) if r[name] not in ("", None) else math.nan for r in rows])
    events = [(float(r["time"]), e) for r in rows for e in (r.get("events") or "").split(";") if e]
    return columns, events


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
