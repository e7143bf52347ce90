"""File input and output: atomic writes, pickle-free ``.npz`` reading, whole output folders.

Every write goes to a temporary file in the destination folder and is renamed over the
target, so a reader never sees a partial file and a crash never destroys the old one.
Every read turns a malformed file into a ``ValueError`` naming the file and the problem.

An output folder ``--out`` is guarded by :func:`output_lock` (a second process on the same
folder is refused) and, for the commands that write it in one go (``verify``, ``report``,
``analyze --out``), committed whole by :func:`staged_output`: the new version is built in a
hidden staging folder beside it and swapped in at the end, so a reader (or a kill, or a full
disk) sees either the complete previous version or the complete new one, never a mix.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

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
    "output_lock",
    "staged_output",
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


def _beside(folder: Path, role: str) -> Path:
    """The hidden path ``.<name>.<role>`` next to ``folder`` (same parent, so a rename stays on one file system)."""
    return folder.parent / f".{folder.name}.{role}"


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on the output folder ``path`` for the body of the ``with``.

    The lock is ``fcntl.flock`` (non-blocking) on the hidden file ``.<name>.lock`` beside the
    folder — beside, not inside, because :func:`staged_output` replaces the folder itself and a
    lock inside it would move away with the old version. The file is removed on release; a
    process that locked a file removed meanwhile takes the new one instead. The kernel drops
    the lock when its process dies (even by SIGKILL), so a killed run never blocks the next.

    Yields:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: another process holds the lock (one line naming the folder).
    """
    folder = Path(path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = _beside(folder, "lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(
                f"--out {str(folder)!r} is in use by another landscape process (lock {str(lock)!r}); "
                "wait for it to finish or choose another folder."
            ) from None
        try:
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the holder removed this file as we opened it: lock the new one
    try:
        yield folder
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


@contextlib.contextmanager
def staged_output(
    path: str | os.PathLike,
    command: str,
    force: bool = False,
    accept: Iterable[str] = (),
    replace: Iterable[str] = (),
) -> Iterator[Path]:
    """Build a new version of the output folder ``path`` in staging and commit it whole.

    Under :func:`output_lock`: checks the folder (:func:`check_output_folder`), clears what a
    killed earlier run left (restoring the previous version if a kill fell between the two
    renames of the fallback below), then makes the staging folder ``.<name>.staging`` beside
    it — a hard-link copy of the current folder (files the tool did not make, other commands'
    files and unchanged evidence carry over; every write in this package replaces files by
    rename, so a link is never written through) without the entries ``replace``, which the
    command writes anew — with the marker of ``command``. The body writes into the staging
    folder. On success the staging folder is swapped with ``path`` in one
    ``renameat2(RENAME_EXCHANGE)`` (Linux; elsewhere ``path`` → ``.<name>.previous``, staging →
    ``path``) and the previous version removed; on any exception the staging folder is removed
    and ``path`` is left as it was (nothing new when it did not exist).

    Args:
        path: the ``--out`` folder.
        command, force, accept: as :func:`check_output_folder`.
        replace: names of top-level entries the command rewrites (dropped from the copy so no
            stale file of the previous version survives beside the new ones).

    Yields:
        the staging folder.

    Raises:
        ValueError: as :func:`check_output_folder`, or the folder is locked by another process.
    """
    folder = check_output_folder(path, command, force, accept)
    with output_lock(folder):
        check_output_folder(folder, command, force, accept)  # again, now that no one else writes it
        staging, previous = _beside(folder, "staging"), _beside(folder, "previous")
        _recover(folder, staging, previous)
        dropped = set(replace)
        try:
            if folder.is_dir():
                shutil.copytree(
                    folder, staging, symlinks=True, copy_function=_link_or_copy,
                    ignore=lambda where, names: [n for n in names if n in dropped] if Path(where) == folder else [],
                )
            else:
                staging.mkdir()
            atomic_write_text(staging / output_marker(command), f"{command}\n")  # never through a link
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _commit(staging, folder, previous)


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link ``source`` to ``target``; copy where a link is impossible (another file system)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _recover(folder: Path, staging: Path, previous: Path) -> None:
    """Remove a killed run's staging folder; put back a previous version a kill left set aside."""
    if staging.exists():
        shutil.rmtree(staging)
    if previous.exists():
        if folder.exists():
            shutil.rmtree(previous)
        else:
            os.rename(previous, folder)


def _commit(staging: Path, folder: Path, previous: Path) -> None:
    """Put ``staging`` at ``folder`` and remove the version it replaces."""
    if not folder.exists():
        os.rename(staging, folder)
    elif _exchange(staging, folder):
        shutil.rmtree(staging)  # now the previous version
    else:
        os.rename(folder, previous)
        os.rename(staging, folder)
        shutil.rmtree(previous)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``);
    False where the system or the file system has no such call."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, f"cannot swap {str(a)!r} into {str(b)!r}: {os.strerror(code)}")


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
