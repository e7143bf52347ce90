r"""A run directory: resolved configuration, trajectory, snapshots, checkpoint, final measure.

Layout of ``RUN/``::

    .landscape-train   the marker of a folder made by ``landscape train`` (:func:`landscape.io.files.claim_output_folder`)
    config.toml        the resolved problem (every default written out, absolute paths), headed by
                       comment lines with the sha256 of each file it references (``[teacher] file``,
                       ``[input] data``) so that ``--resume`` notices a changed input
    trajectory.csv     one row per recorded step (columns: :data:`COLUMNS`; a ``scheme = "prompts"``
                       run: :data:`landscape.dynamics.prompts.COLUMNS`)
    snapshots/         step_NNNNNNNN.npz measures (a, w, p, time) every ``snapshot_every`` steps
    checkpoint.npz     the full state of the run, written atomically, with a sha256 of its
                       arrays checked on load (see :class:`Checkpoint`), every
                       ``checkpoint_every`` steps and every ``checkpoint_seconds`` of wall time
    final.npz          the final measure (a, w, p; and gamma at a finite timescale ratio)
    status.json        the completion record: ``"running"`` from the (re)start, then how the run
                       ended (completed, or the reason it stopped), written last

Every file is replaced atomically (:mod:`landscape.io.files`); the trajectory is appended row by
row and cut back to the checkpoint on ``--resume``, so a killed run resumes cleanly. The
checkpoint records the sha256 of ``config.toml`` (which holds the sha256 of every input file)
and the number of trajectory rows written, so ``--resume`` refuses a checkpoint written for
another configuration and a trajectory cut short. That is the run's whole identity: a run is
a deterministic function of its configuration, so two runs of one ``config.toml`` are the
same run, checkpoint for checkpoint, bit for bit.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.files import MAX_TABLE_BYTES, atomic_write_text, load_npz, read_text, save_npz, write_json
from .trajectory import COLUMNS

__all__ = ["COLUMNS", "Checkpoint", "RunDirectory", "dumps_toml"]


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed to continue a run bit for bit.

    Attributes:
        y: array, the flat state (see :class:`landscape.dynamics.flow.Layout`).
        step, time: progress; step_size: the next (trial) step.
        energy_offset: ``E(0)`` plus every jump of ``E`` caused by events.
        last_kick: time of the last perturbation, or None.
        rng_state: the generator's ``bit_generator.state`` as a JSON string.
        last_row: the CSV line of this step's trajectory row ("" if none was recorded).
        rows: trajectory rows written up to this step, ``last_row`` included.
        config_sha256: sha256 (hex) of the run's ``config.toml``.
    """

    y: np.ndarray
    step: int
    time: float
    step_size: float
    energy_offset: float
    last_kick: float | None
    rng_state: str
    last_row: str
    rows: int
    config_sha256: str


def _text_array(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def _array_text(array: np.ndarray) -> str:
    return array.astype(np.uint8).tobytes().decode("utf-8")


class RunDirectory:
    """The files of one run under ``root``, whose ``trajectory.csv`` has ``columns`` (the first is ``step``)."""

    def __init__(self, root: str | Path, columns: tuple[str, ...] = COLUMNS) -> None:
        self.root = Path(root)
        self.columns = columns
        self.config = self.root / "config.toml"
        self.trajectory = self.root / "trajectory.csv"
        self.checkpoint = self.root / "checkpoint.npz"
        self.final = self.root / "final.npz"
        self.status = self.root / "status.json"
        self.snapshots = self.root / "snapshots"

    def holds_run(self) -> bool:
        """Whether a run was started here (a checkpoint or a configuration exists)."""
        return self.checkpoint.exists() or self.config.exists()

    # ----------------------------------------------------------- trajectory
    @staticmethod
    def format_row(row: dict[str, Any], columns: tuple[str, ...] = COLUMNS) -> str:
        """One CSV line (with newline) for a row dict with the keys ``columns``."""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([_cell(row[c]) for c in columns])
        return buffer.getvalue()

    def start_trajectory(self) -> None:
        """Write the header (a fresh run)."""
        atomic_write_text(self.trajectory, ",".join(self.columns) + "\n")

    def append_row(self, line: str) -> None:
        """Append one formatted row and flush it to disk."""
        try:
            with open(self.trajectory, "a", encoding="utf-8") as handle:
                handle.write(line)
        except OSError as err:
            raise OSError(f"cannot write {str(self.trajectory)!r}: {err.strerror or type(err).__name__}") from None

    def rewind_trajectory(self, step: int, last_row: str) -> None:
        """Keep the complete rows before ``step``, then ``last_row`` (the checkpoint's own row)."""
        atomic_write_text(self.trajectory, ",".join(self.columns) + "\n" + "".join(self._rows_before(step)) + last_row)

    def check_trajectory(self, step: int, rows: int, last_row: str) -> None:
        """Refuse a trajectory that lacks rows the checkpoint at ``step`` counted (``rows``, ``last_row`` included).

        Raises:
            ValueError: ``trajectory.csv`` missing, or with fewer complete rows before ``step``
                than the checkpoint implies (deleted, truncated or replaced), naming the file.
        """
        where = f"cannot resume: trajectory file {str(self.trajectory)!r}"
        if not self.trajectory.is_file():
            raise ValueError(f"{where} does not exist (the checkpoint at step {step} counts {rows} rows).")
        expected = rows - (1 if last_row else 0)
        kept = len(self._rows_before(step))
        if kept < expected:
            raise ValueError(f"{where} has {kept} complete rows before step {step}, the checkpoint counts {expected}: "
                             "it was truncated or replaced (start a new run).")

    def _rows_before(self, step: int) -> list[str]:
        """The complete rows of ``trajectory.csv`` recorded before ``step`` (the header left out)."""
        kept = []
        if self.trajectory.exists():
            lines = read_text(self.trajectory, "trajectory", MAX_TABLE_BYTES).splitlines(keepends=True)
            for line in lines[1:]:
                try:
                    fields = next(csv.reader([line]), [])
                except csv.Error:  # a NUL byte: not a row this tool wrote
                    continue
                if line.endswith("\n") and len(fields) == len(self.columns) and _int(fields[0]) is not None and _int(fields[0]) < step:
                    kept.append(line)
        return kept

    # ------------------------------------------------------------ snapshots
    def save_snapshot(self, step: int, time: float, a: np.ndarray, w: np.ndarray, p: np.ndarray) -> None:
        """``snapshots/step_NNNNNNNN.npz`` with a, w, p and the time."""
        save_npz(self.snapshots / f"step_{step:08d}.npz", a=a, w=w, p=p, time=np.array(time))

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, ckpt: Checkpoint) -> None:
        """Write the checkpoint atomically, with the sha256 of its arrays (:func:`_digest`)."""
        arrays = {
            "y": np.asarray(ckpt.y),
            "step": np.array(ckpt.step, dtype=np.int64),
            "time": np.array(ckpt.time),
            "step_size": np.array(ckpt.step_size),
            "energy_offset": np.array(ckpt.energy_offset),
            "last_kick": np.array([0.0 if ckpt.last_kick is None else ckpt.last_kick, float(ckpt.last_kick is not None)]),
            "rng_state": _text_array(ckpt.rng_state),
            "last_row": _text_array(ckpt.last_row),
            "rows": np.array(ckpt.rows, dtype=np.int64),
            "config_sha256": _text_array(ckpt.config_sha256),
        }
        save_npz(self.checkpoint, **arrays, sha256=_text_array(_digest(arrays)))

    def load_checkpoint(self) -> Checkpoint:
        """Read the checkpoint and check its sha256.

        Raises:
            ValueError: a missing, malformed or corrupted checkpoint (checksum mismatch),
                naming the file.
        """
        names = ("y", "step", "time", "step_size", "energy_offset", "last_kick", "rng_state", "last_row", "rows",
                 "config_sha256")
        arrays = load_npz(self.checkpoint, required=(*names, "sha256"), what="checkpoint")
        where = f"checkpoint file {str(self.checkpoint)!r}"
        stored = arrays.pop("sha256")
        with np.errstate(invalid="ignore", over="ignore"):
            intact = stored.ndim == 1 and bytes(stored.astype(np.uint8)) == _digest(arrays).encode()
        if not intact:
            raise ValueError(f"{where} is corrupted: its sha256 checksum does not match its contents; "
                             "it cannot be resumed (start a new run).")
        kick = arrays["last_kick"]
        scalars = ("step", "time", "step_size", "energy_offset", "rows")
        if arrays["y"].ndim != 1 or kick.shape != (2,) or any(arrays[n].shape != () for n in scalars):
            raise ValueError(f"{where} has arrays of the wrong shape.")
        counts = [arrays[n] for n in ("step", "rows")]
        if any(c < 0 or c != np.floor(c) or c > 2**62 for c in counts) or not arrays["step_size"] > 0:
            raise ValueError(f"{where} holds an invalid step, row count or step size (a crafted file?); "
                             "it cannot be resumed (start a new run).")
        try:
            state = {"y": arrays["y"], **{name: _array_text(arrays[name]) for name in _TEXT_ARRAYS}}
        except ValueError as err:  # bytes that are not UTF-8 text
            raise ValueError(f"{where} is corrupted ({' '.join(str(err).split())[:80]}).") from None
        try:  # the generator state must be one numpy accepts (a KeyError or TypeError otherwise)
            np.random.default_rng().bit_generator.state = json.loads(state["rng_state"])
        except (ValueError, TypeError, KeyError):
            raise ValueError(f"{where} holds no valid random generator state.") from None
        return Checkpoint(
            y=state["y"],
            step=int(arrays["step"]),
            time=float(arrays["time"]),
            step_size=float(arrays["step_size"]),
            energy_offset=float(arrays["energy_offset"]),
            last_kick=float(kick[0]) if kick[1] else None,
            rng_state=state["rng_state"],
            last_row=state["last_row"],
            rows=int(arrays["rows"]),
            config_sha256=state["config_sha256"],
        )

    def write_status(self, status: dict[str, Any]) -> None:
        """``status.json`` (NaN and infinities written as null)."""
        write_json(self.status, {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in status.items()})


#: the checkpoint's arrays that hold UTF-8 text.
_TEXT_ARRAYS = ("rng_state", "last_row", "config_sha256")


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the state arrays: name, dtype-independent float64/int64 bytes, in name order.

    ``load_npz`` hands every array back as float64, so the digest is taken over float64
    values (int64 for ``step`` and ``rows``, uint8 for the text arrays) to be the same on save and load.
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        value = np.asarray(arrays[name])
        if name in ("step", "rows"):
            value = value.astype(np.int64)
        elif name in _TEXT_ARRAYS:
            value = value.astype(np.uint8)
        else:
            value = value.astype(np.float64)
        h.update(f"{name}:{value.shape}:".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


# ------------------------------------------------------------------------ TOML
def dumps_toml(tables: dict[str, dict[str, Any]]) -> str:
    """A TOML document from nested dicts of strings, numbers, booleans and lists of them.

    Raises:
        ValueError: a value TOML (or this writer) cannot hold (NaN, None, other types).
    """
    out: list[str] = []
    _emit_table(out, [], tables)
    return "\n".join(out).strip() + "\n"


def _emit_table(out: list[str], path: list[str], table: dict[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if path and scalars:
        out.append(f"[{'.'.join(path)}]")
    for key, value in scalars.items():
        out.append(f"{key} = {_toml_value(value, key)}")
    if path and scalars:
        out.append("")
    for key, value in table.items():
        if isinstance(value, dict):
            _emit_table(out, [*path, key], value)


def _toml_value(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {key} = {value!r} to TOML.")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, key) for v in value) + "]"
    raise ValueError(f"cannot write {key} = {value!r} ({type(value).__name__}) to TOML.")
