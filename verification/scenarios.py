"""Building blocks shared by the claim checks: problems, training runs, trajectories.

Claims run the same public pipeline a user runs: a problem written as TOML, trained with
:func:`landscape.dynamics.train` into a run directory (kept as evidence), then read back; or,
for several starts of one problem, the same problem files integrated as one ensemble
(:func:`landscape.dynamics.simulate_ensemble`, :func:`ensemble_training`) with each member's
files written as a run's.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landscape.dynamics import RunResult, initial_measure, read_trajectory, simulate_ensemble, train
from landscape.dynamics.rundir import COLUMNS, RunDirectory, dumps_toml
from landscape.dynamics.train import TRAIN_HEADROOM, config_text, resolved_config
from landscape.io.files import atomic_write_text, save_npz, write_json
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
    "ensemble_training",
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


def ensemble_training(
    directories: list[Path], problem: dict[str, Any], inits: list[dict[str, Any]], dynamics: dict[str, Any]
) -> list[TrainingRun]:
    """Train ``problem`` from every ``[init]`` in ``inits`` as one ensemble; member ``b``'s files go to ``directories[b]``.

    Each directory gets the ``problem.toml`` that :func:`run_training` would write (``landscape train
    problem.toml`` reruns that member alone, equal to rounding: :mod:`landscape.dynamics.ensemble`)
    and a ``run`` folder with ``config.toml``, ``trajectory.csv`` (the columns and number format
    of ``landscape train``; ``events`` empty), ``status.json`` and, when completed, ``final.npz``;
    no checkpoint (an ensemble member is not resumable).

    The members share one landscape: with ``hermite_order = "auto"`` its Mehler order is chosen as
    ``landscape train`` chooses it, for all members' initial weights together (so at least the
    order of each member's own run; the same order where the problem needs no series, e.g. erf).

    Args:
        directories: B folders, one per member; problem: the problem's tables;
        inits: B ``[init]`` tables of one shape; dynamics: the ``[dynamics]`` table all members share.

    Raises:
        ValueError: as :func:`landscape.dynamics.simulate_ensemble` (members of different shapes, or a
            scheme it does not run), or an invalid table.
    """
    if len(directories) != len(inits):
        raise ValueError(f"{len(directories)} directories for {len(inits)} [init] tables.")
    resolved = []
    for directory, init in zip(directories, inits, strict=True):
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "problem.toml"
        atomic_write_text(path, dumps_toml({**problem, "init": init, "dynamics": dynamics}))
        resolved.append(resolved_config(path))
    spec, dyn = resolved[0][1], resolved[0][3]
    shape = spec.landscape()  # fixes d for the initial measures
    measures = [initial_measure(init, shape, spec.features) for _, _, init, _ in resolved]
    landscape = spec.landscape(weights=np.concatenate([m.w for m in measures]), headroom=TRAIN_HEADROOM)
    trajectories = simulate_ensemble(landscape, measures, dyn)
    runs = []
    for directory, (tables, *_), trajectory in zip(directories, resolved, trajectories, strict=True):
        run = RunDirectory(directory / "run")
        run.root.mkdir(exist_ok=True)
        atomic_write_text(run.config, config_text(tables))
        result = trajectory.result
        columns = trajectory.columns
        lines = [
            RunDirectory.format_row(
                {**{name: float(values[i]) for name, values in columns.items()}, "step": int(columns["step"][i]), "events": event}
            )
            for i, event in enumerate(trajectory.events)
        ]
        atomic_write_text(run.trajectory, ",".join(COLUMNS) + "\n" + "".join(lines))
        final = None
        if trajectory.final is not None:
            save_npz(run.final, **trajectory.final)
            final = ParticleMeasure(trajectory.final["a"], trajectory.final["w"], trajectory.final["p"])
        run.write_status(
            {
                "status": result.status, "message": result.message, "steps": result.steps, "time": result.time,
                "loss": result.loss, "grad_norm": result.grad_norm, "field_evaluations": result.evaluations,
                "ensemble_members": len(directories),
            }
        )
        runs.append(TrainingRun(result, trajectory.columns, trajectory.event_times(), final, run.root))
    return runs


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
