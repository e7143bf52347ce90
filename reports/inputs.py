"""Reading what the other commands wrote: results, trajectories, analyses and particles.

Three kinds of input folder are recognised by :func:`detect_kind`:

* ``verify``: ``results.json`` of ``landscape verify`` (schema 2: an object with ``status``,
  ``regressions``, ``provenance`` and the claim records under ``results``; schema 1: the list
  of records alone);
* ``run``: a ``landscape train`` run directory (``trajectory.csv``);
* ``analysis``: a ``landscape analyze`` output (``analysis.json``, optionally ``psi0.npz``).

Every reader raises ``ValueError`` with one line naming the file and the problem.
"""

from __future__ import annotations

import csv
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landscape.io import load_npz
from verification.records import ClaimResult
from verification.runner import suite_status

__all__ = [
    "Claim",
    "Metric",
    "Trajectory",
    "VerifyOutput",
    "detect_kind",
    "find_particles",
    "find_teacher_directions",
    "read_json",
    "read_verify",
    "read_trajectory",
]

KINDS = {"verify": "results.json", "run": "trajectory.csv", "analysis": "analysis.json"}


@dataclass(frozen=True)
class Metric:
    """A measured quantity of a claim; ``value``/``uncertainty`` are None where results.json holds null.

    ``applicable`` is False for a quantity the claim marks as undefined for this run (shown "n/a").
    """

    value: float | None
    uncertainty: float | None
    description: str
    applicable: bool = True


@dataclass(frozen=True)
class Claim:
    """One record of ``results.json`` (see ``verification/records.py``)."""

    id: str
    statement: str
    verdict: str
    metrics: dict[str, Metric]
    threshold: str
    evidence: list[str] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)
    seconds: float | None = None
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VerifyOutput:
    """What ``results.json`` says: the claims, and for schema 2 the suite's status, baseline changes and provenance.

    Attributes:
        claims: the records, in order.
        status: ``pass`` or ``fail`` (schema 1: ``fail`` when a claim failed, else ``pass``).
        headline: the status in words.
        compared: whether a baseline was compared (False for schema 1: not recorded).
        regressions, changes: objects with ``claim``, ``metric``, ``old``, ``new``, ``tolerance``,
            ``regression`` and ``note`` (see ``verification/runner.py``).
        provenance: command, profile, versions, threads, date, times (empty for schema 1).
    """

    claims: list[Claim]
    status: str
    headline: str
    compared: bool
    regressions: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    provenance: dict[str, Any]


@dataclass(frozen=True)
class Trajectory:
    """The columns of a ``trajectory.csv``.

    Attributes:
        columns: name → float array of shape (n,) for every numeric column present
            (``time``, ``loss`` and ``grad_norm`` always are).
        events: the ``events`` cell of each row (``""`` where none), length n.
    """

    columns: dict[str, np.ndarray]
    events: list[str]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def __len__(self) -> int:
        return len(self.events)


def detect_kind(folder: Path) -> str:
    """``verify``, ``run`` or ``analysis``, from the files in ``folder`` (checked in that order).

    Raises:
        ValueError: ``folder`` is not a directory or holds none of the three files.
    """
    if not folder.is_dir():
        raise ValueError(f"report input {str(folder)!r} is not a directory.")
    for kind, name in KINDS.items():
        if (folder / name).is_file():
            return kind
    raise ValueError(
        f"report input {str(folder)!r} holds none of results.json (verify), trajectory.csv (train) or analysis.json (analyze)."
    )


def read_json(path: Path) -> Any:
    """Parse a JSON file (NaN and infinities refused); ``ValueError`` naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not readable JSON ({' '.join(str(err).split())}).") from None


def _refuse_constant(name: str) -> None:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def read_verify(path: Path) -> VerifyOutput:
    """The contents of a ``results.json`` of either schema (see the module doc).

    Raises:
        ValueError: not a list of records (or an object holding one under ``results``) with
            ``id``, ``verdict``, ``metrics`` and ``threshold``, or malformed ``regressions``,
            ``changes`` or ``provenance``.
    """
    raw = read_json(path)
    records = raw.get("results") if isinstance(raw, dict) else raw
    if not isinstance(records, list):
        raise ValueError(f"{str(path)!r} must hold a list of claim records (or an object with one under 'results').")
    claims = [_claim(record, path, i) for i, record in enumerate(records)]
    meta = raw if isinstance(raw, dict) else {}
    for key, kind in (("regressions", list), ("changes", list), ("provenance", dict)):
        if not isinstance(meta.get(key, kind()), kind) or (kind is list and not all(isinstance(c, dict) for c in meta.get(key, []))):
            raise ValueError(f"{key} in {str(path)!r} must be {'a list of objects' if kind is list else 'an object'}.")
    regressions = meta.get("counts", {}).get("regressions") if isinstance(meta.get("counts"), dict) else None
    compared = isinstance(regressions, int) and not isinstance(regressions, bool)
    status = suite_status([c.verdict for c in claims], len(meta.get("regressions", [])) if compared else None)
    return VerifyOutput(claims, status["status"], status["headline"], compared, list(meta.get("regressions", [])),
                        list(meta.get("changes", [])), dict(meta.get("provenance", {})))


def _claim(raw: Any, path: Path, index: int) -> Claim:
    where = f"record {index} of {str(path)!r}"
    try:
        ClaimResult.from_dict(raw)  # the one schema of a result record
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    metrics, table, evidence = raw["metrics"], raw.get("table") or [], raw.get("evidence") or []
    return Claim(
        id=str(raw["id"]),
        statement=str(raw.get("statement", "")),
        verdict=str(raw["verdict"]),
        metrics={
            str(name): Metric(_number(m.get("value"), where), _number(m.get("uncertainty"), where), str(m.get("description", "")),
                              m.get("applicable", True))
            for name, m in metrics.items()
        },
        threshold=str(raw["threshold"]),
        evidence=[str(e) for e in evidence],
        table=table,
        seconds=_number(raw.get("seconds"), where),
        failures=[str(f) for f in raw.get("failures") or []],
    )


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: expected a number or null, got {value!r}.")
    return float(value)


def read_trajectory(path: Path) -> Trajectory:
    """Read a ``trajectory.csv`` (columns of ``landscape/dynamics/rundir.py``).

    Empty cells read as NaN; a partial last line (a run killed mid-write) is dropped.

    Raises:
        ValueError: unreadable file, no ``time``/``loss``/``grad_norm`` column, no rows, or a
            cell that is not a number.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"trajectory {str(path)!r} is not readable ({type(err).__name__}).") from None
    rows = list(csv.reader(text.splitlines()))
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


def find_particles(folder: Path, analysis: dict[str, Any], given: Path | None = None) -> dict[str, np.ndarray] | None:
    """The measure an analysis was made at: arrays ``a`` (M, k) and ``w`` (M, d), or None.

    Looked for, in order: ``given``, a path under the key ``measure`` of ``analysis.json``
    (relative to ``folder``), then ``measure.npz`` and ``final.npz`` in ``folder`` and its parent.

    Raises:
        ValueError: ``given`` does not exist, or the file found is not a valid measure.
    """
    if given is not None:
        return load_npz(given, required=("a", "w"), what="measure")
    candidates = []
    if isinstance(analysis.get("measure"), str):
        candidates.append(folder / analysis["measure"])
    for base in (folder, folder.parent):
        candidates += [base / "measure.npz", base / "final.npz"]
    for path in candidates:
        if path.is_file():
            return load_npz(path, required=("a", "w"), what="measure")
    return None


def find_teacher_directions(folder: Path, analysis: dict[str, Any], given: Path | None = None) -> np.ndarray | None:
    """The teacher directions ``u_l`` (array of shape (L, d)) from a problem file, or None.

    Looked for, in order: ``given``, the path under the key ``problem`` of ``analysis.json``,
    then ``config.toml`` and ``problem.toml`` in ``folder`` and its parent. The ``[teacher]``
    table gives ``u`` inline or ``file`` (an ``.npz`` with ``u``; relative to the TOML file).

    Raises:
        ValueError: ``given`` does not exist, or the file found is not readable TOML.
    """
    if given is not None:
        if not given.is_file():
            raise ValueError(f"problem file {str(given)!r} does not exist.")
        return _teacher_u(given)
    candidates = []
    if isinstance(analysis.get("problem"), str):
        candidates.append(folder / analysis["problem"])
    for base in (folder, folder.parent):
        candidates += [base / "config.toml", base / "problem.toml"]
    for path in candidates:
        if path.is_file():
            return _teacher_u(path)
    return None


def _teacher_u(path: Path) -> np.ndarray | None:
    try:
        teacher = tomllib.loads(path.read_text(encoding="utf-8")).get("teacher", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"problem file {str(path)!r} is not readable TOML ({type(err).__name__}).") from None
    if isinstance(teacher.get("file"), str):
        return load_npz(path.parent / teacher["file"], required=("u",), what="teacher")["u"]
    if "u" not in teacher:
        return None
    try:
        u = np.array(teacher["u"], dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"[teacher] u in {str(path)!r} is not a numeric matrix.") from None
    if u.ndim != 2 or not np.all(np.isfinite(u)):
        raise ValueError(f"[teacher] u in {str(path)!r} must be a finite matrix, got shape {u.shape}.")
    return u
