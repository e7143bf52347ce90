"""Reading what the other commands wrote: results, analyses and particles (trajectories: :func:`landscape.dynamics.read_trajectory`).

Three kinds of input folder are recognised by :func:`detect_kind`:

* ``verify``: ``results.json`` of ``landscape verify`` (schema 2: an object with ``status``,
  ``regressions``, ``provenance`` and the claim records under ``results``; schema 1: the list
  of records alone);
* ``run``: a ``landscape train`` run directory (``trajectory.csv``);
* ``analysis``: a ``landscape analyze`` output (``analysis.json``, optionally ``psi0.npz``).

Claim records are read through :class:`verification.records.ClaimResult` (the one schema of a
result record; a ``null`` value reads as NaN). Every reader raises ``ValueError`` with one line
naming the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landscape.io import files
from landscape.io.files import load_npz, read_toml
from verification.records import ClaimResult
from verification.runner import suite_status

__all__ = [
    "VerifyOutput",
    "detect_kind",
    "find_particles",
    "find_teacher_directions",
    "read_json",
    "read_verify",
]

KINDS = {"verify": "results.json", "run": "trajectory.csv", "analysis": "analysis.json"}


@dataclass(frozen=True)
class VerifyOutput:
    """What ``results.json`` says: the claims, and for schema 2 the suite's status, baseline changes and provenance.

    Attributes:
        claims: the records (:class:`~verification.records.ClaimResult`), in order.
        status: ``pass`` or ``fail`` (schema 1: ``fail`` when a claim failed, else ``pass``).
        headline: the status in words.
        compared: whether a baseline was compared (False for schema 1: not recorded).
        regressions, changes: objects with ``claim``, ``metric``, ``old``, ``new``, ``tolerance``,
            ``regression`` and ``note`` (see ``verification/runner.py``).
        provenance: command, profile, versions, threads, date, times (empty for schema 1).
    """

    claims: list[ClaimResult]
    status: str
    headline: str
    compared: bool
    regressions: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    provenance: dict[str, Any]


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
    """Parse a JSON input file strictly (:func:`landscape.io.files.read_json`: a regular file under
    the size cap, NaN and infinities refused, bounded nesting); ``ValueError`` naming the file."""
    return files.read_json(path, "report input")


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


def _claim(raw: Any, path: Path, index: int) -> ClaimResult:
    try:
        return ClaimResult.from_dict(raw)
    except ValueError as err:
        raise ValueError(f"record {index} of {str(path)!r}: {err}") from None


def find_particles(folder: Path, analysis: dict[str, Any], given: Path | None = None) -> dict[str, np.ndarray] | None:
    """The measure an analysis was made at: arrays ``a`` (M, k) and ``w`` (M, d), or None.

    Looked for, in order: ``given``, a path under the key ``measure`` of ``analysis.json``
    (relative to ``folder``), then ``measure.npz`` and ``final.npz`` in ``folder`` and its parent.

    Raises:
        ValueError: ``given`` does not exist, or the file found is not a valid measure.
    """
    path = given if given is not None else _first_file(folder, analysis, "measure", ("measure.npz", "final.npz"))
    return None if path is None else load_npz(path, required=("a", "w"), what="measure")


def find_teacher_directions(folder: Path, analysis: dict[str, Any], given: Path | None = None) -> np.ndarray | None:
    """The teacher directions ``u_l`` (array of shape (L, d)) from a problem file, or None.

    Looked for, in order: ``given``, the path under the key ``problem`` of ``analysis.json``,
    then ``config.toml`` and ``problem.toml`` in ``folder`` and its parent. The ``[teacher]``
    table gives ``u`` inline or ``file`` (an ``.npz`` with ``u``; relative to the TOML file).

    Raises:
        ValueError: ``given`` is not a regular file, or the file found is not readable TOML
            (:func:`landscape.io.files.read_toml`).
    """
    path = given if given is not None else _first_file(folder, analysis, "problem", ("config.toml", "problem.toml"))
    return None if path is None else _teacher_u(path)


def _first_file(folder: Path, analysis: dict[str, Any], key: str, names: tuple[str, ...]) -> Path | None:
    """The first existing file of: the path under ``key`` of ``analysis.json`` (relative to ``folder``), then ``names``
    in ``folder`` and in its parent; None if none exists."""
    given = analysis.get(key)
    candidates = [folder / given] if isinstance(given, str) and given and "\0" not in given else []
    candidates += [base / name for base in (folder, folder.parent) for name in names]
    return next((path for path in candidates if path.is_file()), None)


def _teacher_u(path: Path) -> np.ndarray | None:
    teacher = read_toml(path, "problem").get("teacher", {})
    if not isinstance(teacher, dict):
        raise ValueError(f"[teacher] in {str(path)!r} must be a table.")
    if isinstance(teacher.get("file"), str):
        return load_npz(path.parent / teacher["file"], required=("u",), what="teacher")["u"]
    if "u" not in teacher:
        return None
    try:
        u = np.array(teacher["u"], dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"[teacher] u in {str(path)!r} is not a numeric matrix.") from None
    if u.ndim != 2 or not np.all(np.isfinite(u)):
        raise ValueError(f"[teacher] u in {str(path)!r} must be a finite matrix, got shape {u.shape}.")
    return u
