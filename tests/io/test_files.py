"""Tests of :mod:`landscape.io.files`: atomic writes, pickle-free ``.npz`` reading, strict JSON.

Crash safety (issue 8): a write that fails at any point leaves the previous file intact
and no temporary file behind; reading never unpickles; JSON never contains NaN.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from landscape.io import files as lio


def _listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_atomic_write_creates_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    lio.atomic_write_bytes(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert _listing(target.parent) == ["out.bin"]


def test_atomic_write_replaces_old_content(tmp_path):
    target = tmp_path / "out.txt"
    lio.atomic_write_text(target, "old")
    lio.atomic_write_text(target, "néw")
    assert target.read_text(encoding="utf-8") == "néw"
    assert _listing(tmp_path) == ["out.txt"]


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("stage", ["replace", "fsync", "write"])
def test_failed_write_keeps_old_file_and_removes_temporary(tmp_path, monkeypatch, stage):
    """A write interrupted before the rename (or by it) must not touch the old file."""
    target = tmp_path / "state.json"
    lio.write_json(target, {"step": 1})
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise _Boom(stage)

    if stage == "replace":
        monkeypatch.setattr(lio.os, "replace", boom)
    elif stage == "fsync":
        monkeypatch.setattr(lio.os, "fsync", boom)
    else:  # the payload itself cannot be serialised half-way: fail inside the handle's write
        real_fdopen = os.fdopen

        class _Handle:
            def __init__(self, handle):
                self._handle = handle

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._handle.close()
                return False

            def write(self, data):
                self._handle.write(data[: len(data) // 2])  # half the bytes reach the disk
                raise _Boom(stage)

        monkeypatch.setattr(lio.os, "fdopen", lambda fd, mode: _Handle(real_fdopen(fd, mode)))

    with pytest.raises(_Boom):
        lio.write_json(target, {"step": 2, "payload": list(range(1000))})
    assert target.read_bytes() == before
    assert _listing(tmp_path) == ["state.json"]


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(lio.os, "replace", lambda *a: (_ for _ in ()).throw(_Boom("replace")))
    with pytest.raises(_Boom):
        lio.save_npz(tmp_path / "m.npz", a=np.ones((2, 2)))
    assert _listing(tmp_path) == []


def test_keyboard_interrupt_during_write_cleans_up(tmp_path, monkeypatch):
    """BaseException (Ctrl-C) is handled like any failure: old file kept, temporary removed."""
    target = tmp_path / "x.bin"
    lio.atomic_write_bytes(target, b"old")

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(lio.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        lio.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert _listing(tmp_path) == ["x.bin"]


# ------------------------------------------------------------------------ npz reading
def test_save_and_load_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    a, w = rng.standard_normal((4, 2)), rng.integers(-5, 5, size=(4, 3))
    lio.save_npz(tmp_path / "m.npz", a=a, w=w)
    out = lio.load_npz(tmp_path / "m.npz", required=("a",), optional=("w", "p"))
    assert set(out) == {"a", "w"}
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["w"], w.astype(np.float64))
    assert out["w"].dtype == np.float64


def test_load_npz_refuses_pickled_object_arrays(tmp_path):
    """An object array is stored as a pickle; reading it must not unpickle anything."""
    marker = tmp_path / "pwned"

    class Payload:  # unpickling this would create the marker file
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npz"
    arr = np.empty(1, dtype=object)
    arr[0] = Payload()
    np.savez(path, a=arr, w=np.ones((1, 1)))
    with pytest.raises(ValueError, match="pickle"):
        lio.load_npz(path, required=("a", "w"), what="measure")
    assert not marker.exists()


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"w": np.ones((1, 1))}, "lacks"),
        ({"a": np.array([[np.nan]])}, "NaN"),
        ({"a": np.array([[np.inf]])}, "NaN or infinite"),
        ({"a": np.array([["x"]])}, "not numeric"),
        ({"a": np.array([[1 + 1j]])}, "not numeric"),
    ],
)
def test_load_npz_refuses_bad_contents(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        lio.load_npz(path, required=("a",), what="measure")


@pytest.mark.parametrize(
    "payload",
    [b"", b"not a zip at all", b"PK\x03\x04" + b"\x00" * 10],
)
def test_load_npz_refuses_non_archives(tmp_path, payload):
    path = tmp_path / "junk.npz"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="junk.npz"):
        lio.load_npz(path, required=("a",), what="measure")


def test_load_npz_refuses_plain_npy(tmp_path):
    """A bare ``.npy`` (not an archive) under an ``.npz`` name is refused, not crashed on."""
    path = tmp_path / "plain.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.ones((2, 2)))
    with pytest.raises(ValueError, match="plain.npz"):
        lio.load_npz(path, required=("a",), what="measure")


def test_load_npz_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        lio.load_npz(tmp_path / "nope.npz", required=("a",))


# ------------------------------------------------------------------------------- JSON
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_write_json_refuses_non_finite_and_keeps_old_file(tmp_path, bad):
    target = tmp_path / "r.json"
    lio.write_json(target, {"loss": 1.0})
    with pytest.raises(ValueError):
        lio.write_json(target, {"loss": bad})
    with pytest.raises(ValueError):
        lio.write_json(target, {"nested": [0.0, {"x": bad}]})
    assert json.loads(target.read_text()) == {"loss": 1.0}
    assert _listing(tmp_path) == ["r.json"]


def test_write_json_round_trip(tmp_path):
    obj = {"loss": 0.1, "gamma": [[1.0, 2.0]], "name": "µ"}
    lio.write_json(tmp_path / "r.json", obj)
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8")) == obj


def test_load_npz_refuses_corrupt_compressed_archive(tmp_path):
    """Flipped bytes inside a deflated member raise ``zlib.error``; it must become a ValueError."""
    import io as _io

    buffer = _io.BytesIO()
    np.savez_compressed(buffer, a=np.arange(1000.0))
    raw = bytearray(buffer.getvalue())
    for i in range(60, 200, 7):
        raw[i] ^= 0xFF
    path = tmp_path / "corrupt.npz"
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt.npz"):
        lio.load_npz(path, required=("a",), what="measure")
