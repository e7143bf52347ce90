"""Tests of the input readers of :mod:`landscape.io.files` (issue 15): regular files only, size
caps before reading, bounded nesting, signatures before parsing, the memory cap — each a
one-line ``ValueError`` naming the file (the API side of the command-line contract).
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from landscape.io import files as lio


@pytest.fixture
def kinds(tmp_path):
    """A path of each kind that is not a regular file, with the words its refusal uses."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    os.symlink("loop", tmp_path / "loop")
    return {
        tmp_path / "missing": "does not exist",
        tmp_path / "fifo": "not a regular file (it is a FIFO)",
        tmp_path / "dir": "not a regular file (it is a directory)",
        tmp_path / "loop": "loop of symbolic links",
        "/dev/zero": "not a regular file (it is a character device)",
    }


@pytest.mark.parametrize("reader", ["bytes", "json", "toml", "npz", "npy"])
def test_not_regular_files_are_named_as_such(kinds, reader):
    read = {
        "bytes": lambda p: lio.read_regular_file(p, "input"),
        "json": lambda p: lio.read_json(p, "input"),
        "toml": lambda p: lio.read_toml(p, "input"),
        "npz": lambda p: lio.load_npz(p, ("a",), what="input"),
        "npy": lambda p: lio.load_npy(p, "input"),
    }[reader]
    for path, words in kinds.items():
        with pytest.raises(ValueError, match="^input file") as err:
            read(path)
        assert words in str(err.value) and str(path) in str(err.value)
        assert "\n" not in str(err.value)


def test_size_cap_is_checked_before_reading(tmp_path):
    sparse = tmp_path / "huge.toml"
    with open(sparse, "wb") as handle:
        handle.truncate(2**31)  # 2 GiB, no blocks on disk: a read would take 2 GiB of memory
    with pytest.raises(ValueError, match="has 2147483648 bytes, more than the limit of 67108864"):
        lio.read_toml(sparse, "problem")
    small = tmp_path / "small.json"
    small.write_text("[1, 2, 3]")
    assert lio.read_json(small, "x") == [1, 2, 3]
    with pytest.raises(ValueError, match="more than the limit of 4 bytes"):
        lio.read_json(small, "x", max_bytes=4)


@pytest.mark.parametrize("depth", [lio.MAX_NESTING + 1, 1000, 200_000])
def test_nesting_is_bounded(tmp_path, depth):
    (tmp_path / "a.json").write_text("[" * depth + "]" * depth)
    (tmp_path / "a.toml").write_text("x = " + "[" * depth + "]" * depth)
    for read, path in ((lio.read_json, "a.json"), (lio.read_toml, "a.toml")):
        with pytest.raises(ValueError, match=f"nests arrays or .* more than {lio.MAX_NESTING} deep"):
            read(tmp_path / path, "input")


def test_nesting_at_the_limit_is_read(tmp_path):
    depth = lio.MAX_NESTING
    (tmp_path / "a.json").write_text("[" * depth + "]" * depth)
    value = lio.read_json(tmp_path / "a.json", "input")
    for _ in range(depth - 1):
        (value,) = value
    assert value == []


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "{", "\"\\ud800", ""])
def test_json_is_strict(tmp_path, text):
    (tmp_path / "a.json").write_text(text)
    with pytest.raises(ValueError, match="is not valid JSON"):
        lio.read_json(tmp_path / "a.json", "input")


def test_non_utf8_is_named(tmp_path):
    (tmp_path / "a.toml").write_bytes(b"x = '\xff'")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        lio.read_toml(tmp_path / "a.toml", "problem")


def test_signatures_before_parsing(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "random").write_bytes(rng.bytes(300))
    with pytest.raises(ValueError, match=r"is not an \.npz archive"):
        lio.load_npz(tmp_path / "random", ("a",), what="measure")
    with pytest.raises(ValueError, match=r"is not an \.npy file"):
        lio.load_npy(tmp_path / "random", "data")
    np.save(tmp_path / "x.npy", np.arange(6.0).reshape(2, 3))
    with pytest.raises(ValueError, match=r"single \.npy array"):
        lio.load_npz(tmp_path / "x.npy", ("a",), what="measure")
    np.testing.assert_array_equal(lio.load_npy(tmp_path / "x.npy", "data"), np.arange(6.0).reshape(2, 3))
    np.savez(tmp_path / "x.npz", a=np.ones(2))
    with pytest.raises(ValueError, match=r"is an \.npz archive"):
        lio.load_npy(tmp_path / "x.npz", "data")


def test_npy_header_is_checked_before_allocating(tmp_path):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    (tmp_path / "forged.npy").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="declares shape"):
        lio.load_npy(tmp_path / "forged.npy", "data")
    np.save(tmp_path / "obj.npy", np.array([{}, 1], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="numeric"):
        lio.load_npy(tmp_path / "obj.npy", "data")


def test_memory_cap(monkeypatch):
    monkeypatch.delenv(lio.MEMORY_ENV, raising=False)
    assert lio.memory_limit() == lio.DEFAULT_MAX_MEMORY
    lio.check_memory(lio.DEFAULT_MAX_MEMORY, "x")
    with pytest.raises(ValueError, match=r"\[init\] particles = 9 need about 8 GiB, more than the memory limit of 8 GiB"):
        lio.check_memory(lio.DEFAULT_MAX_MEMORY + 1, "[init] particles = 9")
    for text, value in (("16G", 16 * 2**30), ("512m", 512 * 2**20), ("1000", 1000), ("1.5K", 1536)):
        monkeypatch.setenv(lio.MEMORY_ENV, text)
        assert lio.memory_limit() == value
    for text in ("lots", "-1G", "0", "nanG", "infT"):
        monkeypatch.setenv(lio.MEMORY_ENV, text)
        with pytest.raises(ValueError, match=lio.MEMORY_ENV):
            lio.memory_limit()


def test_write_errors_name_the_path(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=f"cannot write '{tmp_path / 'a.json'}': No space left on device"):
        lio.write_json(tmp_path / "a.json", {"a": 1})
    assert os.listdir(tmp_path) == []


def test_resolve_path_refuses_a_loop(tmp_path):
    os.symlink("loop", tmp_path / "loop")
    with pytest.raises(ValueError, match="loop of symbolic links"):
        lio.resolve_path(tmp_path / "loop" / "x", "[init] measure")
    assert lio.resolve_path(tmp_path, "x") == tmp_path.resolve()


def test_fifo_is_never_opened_blocking(tmp_path):
    """Opening a FIFO with no writer would block forever; the reader answers at once."""
    os.mkfifo(tmp_path / "p")
    with pytest.raises(ValueError, match="FIFO"):
        lio.read_json(tmp_path / "p", "x")
