"""File input and output: atomic writes and pickle-free ``.npz`` reading.

Every write goes to a temporary file in the destination folder and is renamed over the
target, so a reader never sees a partial file and a crash never destroys the old one.
Every read turns a malformed file into a ``ValueError`` naming the file and the problem.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "save_npz",
    "load_npz",
    "write_json",
    "check_output_folder",
    "claim_output_folder",
    "output_marker",
    "MAX_ARRAY_BYTES",
]

#: the largest array (in bytes) an ``.npz`` member may declare in its header; a larger one
#: (a zip bomb, a forged header) is refused before anything is decompressed or allocated.
MAX_ARRAY_BYTES = 2**32


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically; NaN and infinities are refused."""
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def output_marker(command: str) -> str:
    """The name of the file marking a folder as made by ``landscape <command>``: ``.landscape-<command>``."""
    return f".landscape-{command}"


def check_output_folder(
    path: str | os.PathLike, command: str, force: bool = False, accept: Iterable[str] = ()
) -> Path:
    """Check, writing nothing, that ``landscape <command>`` may write into the folder ``path``.

    Accepted: a folder that does not exist, an empty one, or one holding the marker
    :func:`output_marker` of ``command`` or of a command in ``accept`` (the tool made it);
    ``force`` accepts any folder.

    Args:
        path: the ``--out`` folder.
        command: the subcommand writing there (``verify``, ``train``, ``analyze``, ``report``).
        force: accept a non-empty folder the tool did not make (``--force``).
        accept: other commands whose folders this one may write into (``analyze`` into a
            ``train`` run directory, ``report`` into its own input folder).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``path`` is a file, or a non-empty folder without an accepted marker and
            ``force`` is false (one line naming the folder and ``--force``).
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {str(folder)!r} exists and is not a folder.")
    markers = [output_marker(name) for name in (command, *accept)]
    if folder.is_dir() and not force and any(folder.iterdir()) and not any((folder / m).is_file() for m in markers):
        raise ValueError(
            f"--out {str(folder)!r} is not empty and was not made by landscape {command}; "
            "choose another folder or pass --force."
        )
    return folder


def claim_output_folder(
    path: str | os.PathLike, command: str, force: bool = False, accept: Iterable[str] = ()
) -> Path:
    """:func:`check_output_folder`, then create the folder and write the marker of ``command``
    (a file holding the command's name), so the next run of the same command reuses it.

    Raises:
        ValueError: as :func:`check_output_folder`; nothing is written then.
    """
    folder = check_output_folder(path, command, force, accept)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / output_marker(command)
    if not marker.is_file():  # a plain write: a marker cut short by a kill still marks the folder
        marker.write_text(f"{command}\n", encoding="utf-8")
    return folder


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Save arrays as an uncompressed ``.npz``, atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buffer.getvalue())


def load_npz(
    path: str | os.PathLike,
    required: Iterable[str],
    optional: Iterable[str] = (),
    what: str = "file",
) -> dict[str, np.ndarray]:
    """Read named numeric arrays from an ``.npz`` file without unpickling anything.

    Args:
        path: the file.
        required: array names that must be present.
        optional: array names read when present.
        what: what the file is, for error messages ("measure", "probes", ...).

    Returns:
        dict from name to float64 array.

    Raises:
        ValueError: missing or unreadable file, pickled (object) arrays, missing arrays,
            an array declaring more than :data:`MAX_ARRAY_BYTES`, non-numeric or non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file {str(path)!r} does not exist.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array, not an archive
            raise ValueError(f"{what} file {str(path)!r} is a single .npy array, not an .npz archive of named arrays.")
        with loaded as npz:
            names = set(npz.files)
            missing = [name for name in required if name not in names]
            if missing:
                raise ValueError(f"{what} file {str(path)!r} lacks array(s) {', '.join(missing)}.")
            wanted = [*required, *(name for name in optional if name in names)]
            for name in wanted:
                _check_declared_size(npz.zip, name, path, what)
            raw = {name: npz[name] for name in wanted}
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise ValueError(f"{what} file {str(path)!r} holds pickled (object) arrays, which are refused.") from None
        if str(err).startswith(what):
            raise
        raise ValueError(f"{what} file {str(path)!r} is not a valid .npz archive ({err}).") from None
    except (
        OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, MemoryError, NotImplementedError, RuntimeError
    ) as err:  # RuntimeError: an encrypted member; NotImplementedError: an unknown compression method
        raise ValueError(f"{what} file {str(path)!r} is not a valid .npz archive ({type(err).__name__}).") from None
    out = {}
    for name, value in raw.items():
        if value.dtype.kind not in "biuf":
            raise ValueError(f"array {name!r} in {what} file {str(path)!r} is not numeric (dtype {value.dtype}).")
        value = value.astype(np.float64)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"array {name!r} in {what} file {str(path)!r} has NaN or infinite values.")
        out[name] = value
    return out


def _check_declared_size(archive: zipfile.ZipFile, name: str, path: Path, what: str) -> None:
    """Read only the ``.npy`` header of ``name`` and refuse a declared size above :data:`MAX_ARRAY_BYTES`."""
    with archive.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(member)
    declared = math.prod(shape) * dtype.itemsize
    if declared > MAX_ARRAY_BYTES:
        raise ValueError(
            f"{what} file {str(path)!r}: array {name!r} declares shape {shape} ({declared:.3g} bytes), "
            f"above the limit of {MAX_ARRAY_BYTES} bytes (a forged header or a zip bomb)."
        )
