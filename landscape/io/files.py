"""File input and output: atomic writes, pickle-free ``.npz`` reading, whole output folders.

Every write goes to a temporary file in the destination folder and is renamed over the
target, so a reader never sees a partial file and a crash never destroys the old one.
Every read turns a malformed file into a ``ValueError`` naming the file and the problem.

An output folder ``--out`` is guarded by :func:`output_lock` (a second process on the same
folder is refused) and, for the commands that write it in one go (``verify``, ``report``,
``analyze --out``), committed whole by :func:`staged_output`: the new version is built in a
hidden staging folder beside it and swapped in at the end, so a reader (or a kill, or a full
disk) sees either the complete previous version or the complete new one, never a mix.

Every input file is opened through :func:`open_regular_file`: a missing file, a directory, a
FIFO, a device (``/dev/zero``) or a symbolic-link loop is refused with one line saying which,
before anything is read (a FIFO is opened without blocking), and a file larger than its cap
(:data:`MAX_TEXT_BYTES` for TOML and JSON) is refused before it is read. JSON and TOML are
parsed by :func:`read_json` and :func:`read_toml`, which refuse nesting deeper than
:data:`MAX_NESTING` (never a ``RecursionError``). :func:`check_memory` refuses a size whose
arrays would not fit the memory cap (:func:`memory_limit`, ``LANDSCAPE_MAX_MEMORY``) before
anything is allocated.
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
import stat
import tempfile
import tomllib
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
    "MAX_TEXT_BYTES",
    "MAX_TABLE_BYTES",
    "MAX_NESTING",
    "DEFAULT_MAX_MEMORY",
    "open_regular_file",
    "read_regular_file",
    "resolve_path",
    "read_text",
    "read_json",
    "read_toml",
    "load_npy",
    "check_nesting",
    "memory_limit",
    "check_memory",
]

#: the largest array (in bytes) an ``.npz`` member may declare in its header; a larger one
#: (a zip bomb, a forged header) is refused before anything is decompressed or allocated.
MAX_ARRAY_BYTES = 2**32
#: the largest TOML or JSON file read (64 MiB); a larger one is refused before it is read.
MAX_TEXT_BYTES = 2**26
#: the largest CSV table read (a trajectory; 1 GiB).
MAX_TABLE_BYTES = 2**30
#: the deepest nesting of arrays and tables accepted in JSON and TOML (the toolkit's own files
#: nest at most 5 deep); deeper input is refused, never a ``RecursionError``.
MAX_NESTING = 64
#: the default memory cap (bytes) of :func:`check_memory`; ``LANDSCAPE_MAX_MEMORY`` overrides it.
DEFAULT_MAX_MEMORY = 8 * 2**30
#: the environment variable that sets the memory cap (bytes, or with a suffix K, M, G, T: ``64G``).
MEMORY_ENV = "LANDSCAPE_MAX_MEMORY"
_NPZ_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip member, or an empty archive
_NPY_SIGNATURE = b"\x93NUMPY"


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


@contextlib.contextmanager
def open_regular_file(path: str | os.PathLike, what: str, max_bytes: int | None = None) -> Iterator[io.BufferedReader]:
    """Open ``path`` for binary reading, refusing anything but a regular file of at most ``max_bytes``.

    The file is opened without blocking (a FIFO never hangs) and checked through the open
    descriptor (``fstat``), so what is checked is what is read.

    Args:
        path: the file.
        what: what it is, for messages (``"problem"``, ``"measure"``, ``"baseline"``, ...).
        max_bytes: the largest size accepted (None: any).

    Yields:
        the open file, positioned at its start.

    Raises:
        ValueError: one line naming ``what`` and ``path``: it does not exist, cannot be opened
            (a symbolic-link loop, no permission), is not a regular file (a directory, a FIFO,
            a device) or is larger than ``max_bytes``.
    """
    name = f"{what} file {str(path)!r}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ValueError(f"{name} does not exist.") from None
    except OSError as err:
        if err.errno == errno.EISDIR:
            raise ValueError(f"{name} is not a regular file (it is a directory).") from None
        if err.errno == errno.ELOOP:
            raise ValueError(f"{name} cannot be opened: it is a loop of symbolic links.") from None
        raise ValueError(f"{name} cannot be opened ({err.strerror or type(err).__name__}).") from None
    except (TypeError, ValueError) as err:  # a NUL byte in the path
        raise ValueError(f"{name} is not a valid path ({err}).") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{name} is not a regular file (it is {_kind(info.st_mode)}).")
        if max_bytes is not None and info.st_size > max_bytes:
            raise ValueError(f"{name} has {info.st_size} bytes, more than the limit of {max_bytes} bytes for a {what} file.")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def resolve_path(path: str | os.PathLike, what: str) -> Path:
    """``path`` made absolute with its symbolic links resolved (:meth:`pathlib.Path.resolve`).

    Raises:
        ValueError: a loop of symbolic links on the way (one line naming ``what`` and ``path``).
    """
    try:
        return Path(path).resolve()
    except RuntimeError:  # Python 3.11's answer to a loop (3.13: OSError ELOOP)
        raise ValueError(f"{what} {str(path)!r} cannot be resolved: it is a loop of symbolic links.") from None
    except OSError as err:
        reason = "it is a loop of symbolic links" if err.errno == errno.ELOOP else (err.strerror or type(err).__name__)
        raise ValueError(f"{what} {str(path)!r} cannot be resolved: {reason}.") from None


def read_regular_file(path: str | os.PathLike, what: str, max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of the regular file ``path`` of at most ``max_bytes`` (:func:`open_regular_file`).

    Raises:
        ValueError: as :func:`open_regular_file`; a read error; a file grown past ``max_bytes`` meanwhile.
    """
    with open_regular_file(path, what, max_bytes) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as err:
            raise ValueError(f"{what} file {str(path)!r} cannot be read ({err.strerror or type(err).__name__}).") from None
    if len(data) > max_bytes:
        raise ValueError(f"{what} file {str(path)!r} has more than the limit of {max_bytes} bytes for a {what} file.")
    return data


def read_text(path: str | os.PathLike, what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of the regular file ``path`` (:func:`read_regular_file`).

    Raises:
        ValueError: as :func:`read_regular_file`, or the bytes are not UTF-8.
    """
    data = read_regular_file(path, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} file {str(path)!r} is not UTF-8 text (byte {err.start}).") from None


def check_nesting(value: Any, where: str, limit: int = MAX_NESTING) -> Any:
    """``value`` when its lists and dicts nest at most ``limit`` deep (checked without recursion).

    Raises:
        ValueError: deeper nesting, naming ``where``.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                raise ValueError(f"{where} nests arrays or tables more than {limit} deep.")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: str | os.PathLike, what: str, max_bytes: int = MAX_TEXT_BYTES) -> Any:
    """Parse the JSON file ``path`` strictly: a regular file of at most ``max_bytes``, UTF-8, no
    ``NaN``/``Infinity`` constants, nesting at most :data:`MAX_NESTING` deep.

    Returns:
        the parsed value (any JSON type: the caller checks the shape it needs).

    Raises:
        ValueError: one line naming ``what`` and ``path`` and the problem.
    """
    text = read_text(path, what, max_bytes)
    name = f"{what} file {str(path)!r}"
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"{name} nests arrays or objects more than {MAX_NESTING} deep.") from None
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{name} is not valid JSON ({' '.join(str(err).split())[:200]}).") from None
    return check_nesting(value, name)


def read_toml(path: str | os.PathLike, what: str, max_bytes: int = MAX_TEXT_BYTES) -> dict[str, Any]:
    """Parse the TOML file ``path``: a regular file of at most ``max_bytes``, UTF-8, nesting at
    most :data:`MAX_NESTING` deep.

    Raises:
        ValueError: one line naming ``what`` and ``path`` and the problem.
    """
    text = read_text(path, what, max_bytes)
    name = f"{what} file {str(path)!r}"
    try:
        value = tomllib.loads(text)
    except RecursionError:  # tomllib recurses once per nesting level of arrays and inline tables
        raise ValueError(f"{name} nests arrays or tables more than {MAX_NESTING} deep.") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{name} is not valid TOML: {' '.join(str(err).split())[:200]}.") from None
    return check_nesting(value, name)


def memory_limit() -> int:
    """The memory cap (bytes) of :func:`check_memory`: ``LANDSCAPE_MAX_MEMORY`` (bytes, or a number
    with a suffix K, M, G or T, powers of 1024) when set, else :data:`DEFAULT_MAX_MEMORY` (8 GiB).

    Raises:
        ValueError: ``LANDSCAPE_MAX_MEMORY`` is not a positive size.
    """
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_MEMORY
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(raw[-1].upper(), 1)
    number = raw[:-1] if scale > 1 else raw
    try:
        value = float(number) * scale
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise ValueError(f"{MEMORY_ENV} must be a size in bytes (e.g. 17179869184 or 16G), got {raw[:40]!r}.")
    return int(value)


def check_memory(need: float, what: str, limit: int | None = None) -> None:
    """Refuse, before allocating, work whose arrays need ``need`` bytes, above the cap ``limit``.

    Args:
        need: bytes the arrays would take (an estimate from the sizes).
        what: the setting and the arrays, for the message (``"[init] particles = 100000: the
            M×M kernel matrices"``).
        limit: the cap (default :func:`memory_limit`).

    Raises:
        ValueError: ``need > limit``: one line naming ``what``, the memory and the cap's variable.
    """
    limit = memory_limit() if limit is None else limit
    if need > limit:
        raise ValueError(f"{what} need about {_bytes_text(need)}, more than the memory limit of {_bytes_text(limit)} "
                         f"(set {MEMORY_ENV} to raise it).")


def _bytes_text(n: float) -> str:
    """``n`` bytes in words: ``80 GB``, ``8 GiB``-style binary units."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} bytes"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise _write_error(path, err) from None
        raise


def _write_error(path: Path, err: OSError) -> OSError:
    """``err`` as one line naming the file that could not be written (a full disk, a file-size limit)."""
    error = OSError(f"cannot write {str(path)!r}: {err.strerror or type(err).__name__}")
    error.errno = err.errno
    return error


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
    marker = folder / output_marker(command)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not marker.is_file():  # a plain write: a marker cut short by a kill still marks the folder
            marker.write_text(f"{command}\n", encoding="utf-8")
    except OSError as err:
        raise _write_error(marker, err) from None
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
        ValueError: not a regular file (:func:`open_regular_file`), not a zip archive (random
            bytes, a single ``.npy``), pickled (object) arrays, missing arrays, an array
            declaring more than :data:`MAX_ARRAY_BYTES`, non-numeric or non-finite values.
    """
    path = Path(path)
    name = f"{what} file {str(path)!r}"
    with open_regular_file(path, what) as handle:
        head = handle.read(8)
        handle.seek(0)
        if head.startswith(_NPY_SIGNATURE):
            raise ValueError(f"{name} is a single .npy array, not an .npz archive of named arrays.")
        if not head.startswith(_NPZ_SIGNATURES):
            raise ValueError(f"{name} is not an .npz archive (it does not start with the zip signature).")
        try:
            with np.load(handle, allow_pickle=False) as npz:
                names = set(npz.files)
                missing = [key for key in required if key not in names]
                if missing:
                    raise ValueError(f"{name} lacks array(s) {', '.join(missing)}.")
                wanted = [*required, *(key for key in optional if key in names)]
                for key in wanted:
                    _check_declared_size(npz.zip, key, path, what)
                raw = {key: npz[key] for key in wanted}
        except ValueError as err:
            if "pickle" in str(err).lower():
                raise ValueError(f"{name} holds pickled (object) arrays, which are refused.") from None
            if str(err).startswith(what) or str(err).startswith(name):
                raise
            raise ValueError(f"{name} is not a valid .npz archive ({' '.join(str(err).split())[:160]}).") from None
        except (
            OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, MemoryError, NotImplementedError, RuntimeError
        ) as err:  # RuntimeError: an encrypted member; NotImplementedError: an unknown compression method
            raise ValueError(f"{name} is not a valid .npz archive ({type(err).__name__}).") from None
    out = {}
    for key, value in raw.items():
        if value.dtype.kind not in "biuf":
            raise ValueError(f"array {key!r} in {name} is not numeric (dtype {value.dtype}).")
        value = value.astype(np.float64)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"array {key!r} in {name} has NaN or infinite values.")
        out[key] = value
    return out


def load_npy(path: str | os.PathLike, what: str) -> np.ndarray:
    """Read one numeric ``.npy`` array without unpickling anything (an empirical data set).

    Returns:
        the array as stored (numeric dtype; its values are not checked here).

    Raises:
        ValueError: not a regular file (:func:`open_regular_file`), not an ``.npy`` file
            (random bytes, an ``.npz`` archive), a header declaring more than
            :data:`MAX_ARRAY_BYTES`, pickled or non-numeric data, a truncated file.
    """
    name = f"{what} file {str(path)!r}"
    with open_regular_file(path, what) as handle:
        head = handle.read(8)
        handle.seek(0)
        if head.startswith(_NPZ_SIGNATURES):
            raise ValueError(f"{name} is an .npz archive; it must be a single .npy array.")
        if not head.startswith(_NPY_SIGNATURE):
            raise ValueError(f"{name} is not an .npy file (it does not start with the .npy signature).")
        try:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(handle)
            declared = math.prod(shape) * dtype.itemsize
            if declared > MAX_ARRAY_BYTES:
                raise ValueError(f"{name} declares shape {shape} ({declared:.3g} bytes), above the limit of "
                                 f"{MAX_ARRAY_BYTES} bytes.")
            if dtype.kind not in "biuf":
                raise ValueError(f"{name} must hold a numeric array, got dtype {dtype}.")
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
        except ValueError as err:
            if str(err).startswith(name):
                raise
            raise ValueError(f"{name} is not a valid .npy file ({' '.join(str(err).split())[:160]}).") from None
        except (OSError, EOFError, MemoryError) as err:
            raise ValueError(f"{name} is not a valid .npy file ({type(err).__name__}).") from None


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
