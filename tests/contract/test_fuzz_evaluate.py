"""Fuzzing every file ``landscape evaluate`` reads (issue 8).

The contract (README, "The command"): bad input of any kind ends with exit status 2 and
exactly one stderr line starting with ``error:``, never a traceback, never a hang, never a
NaN or an infinity in the output, and nothing written. Input that happens to be valid ends
with status 0 and one strict-JSON object of finite numbers.

Files fuzzed: the problem TOML (random bytes, text mutations, mutated tables and keys,
wrong types, huge/negative/NaN numbers, wrong shapes, unknown tables and keys, missing
files), the empirical data ``.npy`` and the teacher ``.npz`` it points to, the measure
``.npz`` and the probes ``.npz`` (random bytes, truncations, byte flips, pickled object
arrays, NaN/inf, wrong shapes, bad weights, zero particles, overflow).

Most cases call :func:`landscape.cli.main` in-process (it returns the exit status); a
handful go through a real interpreter to check the real stderr. Every generator is
seeded; the number of cases tried is asserted, so a shrinking generator cannot hide.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from landscape.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "landscape" / "examples"
#: seconds one in-process case may take before it counts as a hang.
CASE_TIMEOUT_S = 60
#: cases per fuzz family in the quick run and in the slow run.
QUICK_CASES = 40
SLOW_CASES = 400


# --------------------------------------------------------------------- the oracle
class _Hang(BaseException):
    """Raised by the alarm; a BaseException so the CLI's handlers cannot swallow it."""


@dataclass
class Outcome:
    status: int
    out: str
    err: str


def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"non-finite JSON constant {constant} in the output")

    return json.loads(text, parse_constant=refuse)


def _finite_numbers(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite_numbers(v) for v in obj)
    return True


def run_cli(argv: list[str], capsys) -> Outcome:
    """``landscape ARGV`` in this process under an alarm (a hang fails the test)."""

    def on_alarm(signum, frame):
        raise _Hang(f"no answer within {CASE_TIMEOUT_S} s: {argv}")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        capsys.readouterr()
        status = main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    captured = capsys.readouterr()
    return Outcome(status, captured.out, captured.err)


def run_in_process(args: list[str], capsys) -> Outcome:
    """Run ``landscape evaluate … --json`` in this process under an alarm."""
    return run_cli(["evaluate", *args, "--json"], capsys)


def check_outcome(outcome: Outcome, bad: bool, label: str) -> None:
    """The CLI contract. ``bad``: the input is known to be invalid (status must be 2)."""
    where = f"[{label}] status={outcome.status} stderr={outcome.err!r} stdout={outcome.out[:200]!r}"
    assert "Traceback" not in outcome.err, where
    if outcome.status == 0 and not bad:
        # stderr holds only warnings (e.g. error estimates above tolerance, issue 15), one per line
        assert all(line.startswith("warning: ") for line in outcome.err.splitlines()), where
        result = _strict_json(outcome.out)
        assert _finite_numbers(result), where
        return
    assert outcome.status == 2, where
    assert outcome.out == "", where
    lines = outcome.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), where
    assert "unexpected" not in lines[0], where


# ------------------------------------------------------------- valid base inputs
BASE_PROBLEMS: dict[str, dict] = {
    "exact_inf": {
        "input": {"law": "gaussian", "dim": 6},
        "teacher": {
            "activation": "erf",
            "c": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            "u": [[1.5, 0, 0, 0, 0, 0], [0, 1.5, 0, 0, 0, 0], [0, 0, 1.5, 0, 0, 0]],
        },
        "model": {"activation": "erf", "features": 3, "bias": False},
        "task": {"noise": 0.1, "prompt_length": "inf"},
        "expectation": {"method": "exact", "seed": 0, "singular_rtol": 1e-10},
    },
    "exact_finite": {
        "teacher": {"file": "teacher_weights.npz", "activation": "tanh"},
        "model": {"activation": "tanh", "features": 3},
        "task": {"noise": 0.2, "prompt_length": 20, "loss_star": 0.01},
        "expectation": {"method": "exact", "fourth_moment_samples": 500, "hermite_order": 16, "hermite_step": 0.2},
    },
    "mc_sphere": {
        "input": {"law": "sphere"},
        "teacher": {"activation": "relu", "c": [[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
                    "u": [[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]]},
        "model": {"activation": "sigmoid", "bias": False},
        "task": {"prompt_length": 7},
        "expectation": {"method": "monte_carlo", "samples": 300, "seed": 3},
        "dynamics": {"steps": 10},
    },
    "empirical": {
        "input": {"law": "empirical", "data": "x.npy", "dim": 6},
        "teacher": {"c": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
                    "u": [[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]]},
        "model": {"activation": "gelu"},
        "expectation": {"method": "empirical"},
        "analysis": {"anything": "goes"},
    },
}


def toml_value(value) -> str:
    """A TOML literal for ``value`` (enough for fuzzing: no dates, no multi-line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_dumps(doc: dict) -> str:
    lines = []
    for key, value in doc.items():  # top-level non-tables first (TOML needs them before tables)
        if not isinstance(value, dict):
            lines.append(f"{json.dumps(key)} = {toml_value(value)}")
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{json.dumps(name)}]")
            lines.extend(f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def write_support_files(folder: Path) -> None:
    """The data and teacher files the base problems point to, and a valid measure and probes."""
    rng = np.random.default_rng(7)
    np.save(folder / "x.npy", rng.standard_normal((200, 6)))
    np.savez(folder / "teacher_weights.npz", c=np.eye(3), u=0.8 * np.eye(6)[:3])
    np.savez(folder / "measure.npz", a=rng.standard_normal((5, 3)), w=0.5 * rng.standard_normal((5, 6)),
             p=np.full(5, 0.2))
    np.savez(folder / "probes.npz", a=rng.standard_normal((2, 3)), w=0.5 * rng.standard_normal((2, 6)))


@pytest.fixture
def workdir(tmp_path) -> Path:
    write_support_files(tmp_path)
    for name, doc in BASE_PROBLEMS.items():
        (tmp_path / f"{name}.toml").write_text(toml_dumps(doc), encoding="utf-8")
    return tmp_path


def test_base_inputs_are_valid(workdir, capsys):
    """The fuzzers mutate these; each must evaluate cleanly (else the fuzzing proves nothing)."""
    for name in BASE_PROBLEMS:
        args = ["--problem", str(workdir / f"{name}.toml"), "--measure", str(workdir / "measure.npz"),
                "--probes", str(workdir / "probes.npz")]
        outcome = run_in_process(args, capsys)
        assert outcome.status == 0, (name, outcome)
        check_outcome(outcome, bad=False, label=name)
        assert len(_strict_json(outcome.out)["first_variation"]) == 2


# ------------------------------------------------------------------ weird values
def weird_values(rng: np.random.Generator) -> list:
    """Values of every wrong type and every dangerous size."""
    return [
        None, True, False, 0, 1, -1, -7, 2, 10**6, 10**18, 2**63 - 1, -(2**63), 10**40,
        0.0, -0.0, 0.5, -1.5, 1e-300, 1e300, 1e308, -1e308, math.nan, math.inf, -math.inf,
        "", "inf", "nan", "erf", "exact", "µ\u0000x", "../../etc/passwd", "x.npy", "teacher_weights.npz",
        [], [[]], [1, 2], [[1.0, "a"]], [[True]], [[1.0], [2.0, 3.0]], [[[1.0]]], [[math.nan]],
        [[1e308, 1e308, 1e308]] * 3, {"a": 1}, {},
        float(rng.standard_normal()), int(rng.integers(-10, 10)),
    ]


def _drop_none(value):
    return value is None


def mutate_document(doc: dict, rng: np.random.Generator) -> tuple[dict, bool]:
    """One structural mutation of a parsed problem; returns (new doc, surely_bad)."""
    doc = json.loads(json.dumps(doc))  # deep copy of JSON-able data
    tables = [name for name, value in doc.items() if isinstance(value, dict)]
    kind = rng.integers(0, 7)
    table = tables[rng.integers(len(tables))]
    keys = list(doc[table])
    if kind == 0 and keys:  # delete a key
        del doc[table][keys[rng.integers(len(keys))]]
        return doc, False
    if kind == 1:  # delete a table
        del doc[table]
        return doc, table == "teacher"
    if kind == 2:  # unknown key in a known table
        if table in ("init", "dynamics", "analysis"):
            return doc, False
        doc[table]["unknown_" + str(rng.integers(1000))] = 1
        return doc, True
    if kind == 3:  # unknown table
        doc["unknown_table_" + str(rng.integers(1000))] = {"x": 1}
        return doc, True
    if kind == 4:  # a table replaced by a scalar or a list
        doc[table] = [1, 2] if rng.random() < 0.5 else 3
        return doc, True
    # kinds 5, 6: a key set to a weird value (an existing key, or a known key not present)
    known = {
        "input": ["law", "dim", "data"],
        "teacher": ["activation", "c", "u", "file"],
        "model": ["activation", "features", "bias"],
        "task": ["noise", "prompt_length", "loss_star"],
        "expectation": ["method", "samples", "seed", "hermite_order", "hermite_step", "fourth_moment_samples",
                        "singular_rtol"],
    }.get(table, keys or ["x"])
    key = known[rng.integers(len(known))]
    values = [v for v in weird_values(rng) if not _drop_none(v)]
    doc[table][key] = values[rng.integers(len(values))]
    return doc, False


#: sizes restored after a structural mutation deleted them, so that a deleted key falls back to
#: a cheap value rather than a default sized for production (200 000-point samples).
CHEAP_EXPECTATION = {"samples": 300, "fourth_moment_samples": 500, "hermite_order": 16, "hermite_step": 0.2}


def keep_cheap(doc: dict) -> dict:
    """Put back the cost-controlling keys a mutation deleted (values it set are kept)."""
    table = doc.setdefault("expectation", {})
    if isinstance(table, dict):
        for key, value in CHEAP_EXPECTATION.items():
            table.setdefault(key, value)
    return doc


def mutate_text(text: str, rng: np.random.Generator) -> str:
    """One text-level mutation: truncation, byte flips, deleted or duplicated lines, junk."""
    data = bytearray(text.encode("utf-8"))
    kind = rng.integers(0, 6)
    if kind == 0:
        return data[: rng.integers(0, len(data))].decode("utf-8", "replace")
    if kind == 1:
        for _ in range(rng.integers(1, 6)):
            data[rng.integers(len(data))] = rng.integers(0, 256)
        return data.decode("latin-1")
    lines = text.splitlines()
    i = int(rng.integers(len(lines)))
    if kind == 2:
        del lines[i]
    elif kind == 3:
        lines.insert(i, lines[i])  # duplicated key or table: a TOML error
    elif kind == 4:
        junk = ["[", "]", "=", "[[x]]", "a.b.c = 1", "x = [[[[[[", "\"\"\"", "'", "key = 1e999999", "dim = 0x10",
                "[teacher.extra]", "c = [" + "[" * 5000 + "]" * 5000 + "]"]
        lines.insert(i, junk[rng.integers(len(junk))])
    else:
        lines[i] = lines[i].replace("=", "= -", 1)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- npz corruptions
def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _pickle_npz(name: str, other: dict) -> bytes:
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = {"x": 1}, [1, 2]
    return _npz_bytes(**{name: arr}, **other)


def _huge_header_npz(name: str, other: dict) -> bytes:
    """An archive whose member declares 10¹³ elements but holds 3."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        member = io.BytesIO()
        np.save(member, np.zeros(3))
        raw = member.getvalue().replace(b"(3,)", b"(10000000000000,)")
        archive.writestr(f"{name}.npy", raw)
        for key, value in other.items():
            member = io.BytesIO()
            np.save(member, value)
            archive.writestr(f"{key}.npy", member.getvalue())
    return buffer.getvalue()


def corrupt_arrays(valid: dict[str, np.ndarray], rng: np.random.Generator, role: str) -> tuple[bytes, bool, str]:
    """A corrupted version of a valid ``.npz`` (as bytes), whether it is surely invalid, and what was done.

    ``role`` ("measure", "probes", "teacher", "data") decides which changes are surely
    invalid: a zero or repeated row makes a measure's (or the data's) Σ_µµ singular but is
    a fine probe; a teacher may lose a feature column; the data may be a bare ``.npy``.
    """
    raw, bad, kind, name = _corrupt(valid, rng, role)
    return raw, bad, f"corruption {kind} of {name!r}"


def _corrupt(valid: dict[str, np.ndarray], rng: np.random.Generator, role: str):
    names = list(valid)
    name = names[rng.integers(len(names))]
    base = _npz_bytes(**valid)
    kind = int(rng.integers(0, 24))
    arrays = dict(valid)
    if kind == 0:
        return bytes(rng.integers(0, 256, size=rng.integers(0, 400), dtype=np.uint8)), True, kind, name
    if kind == 1:
        return base[: rng.integers(0, len(base))], True, kind, name
    if kind == 2:
        raw = bytearray(base)
        for _ in range(rng.integers(1, 10)):
            raw[rng.integers(len(raw))] = rng.integers(0, 256)
        return bytes(raw), False, kind, name  # a flip in padding can leave it valid
    if kind == 3:
        return _pickle_npz(name, {k: v for k, v in valid.items() if k != name}), True, kind, name
    if kind == 4:
        return _huge_header_npz(name, {k: v for k, v in valid.items() if k != name}), True, kind, name
    if kind == 5:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **valid)
        raw = bytearray(buffer.getvalue())
        for i in range(50, min(len(raw), 150), 5):
            raw[i] ^= 0x5A
        return bytes(raw), False, kind, name
    if kind == 6:
        buffer = io.BytesIO()
        np.save(buffer, valid[name])  # a bare .npy under an .npz name
        return buffer.getvalue(), role != "data", kind, name
    if kind == 7:
        del arrays[name]
        return _npz_bytes(**arrays), name != "p", kind, name
    value = arrays[name].copy()
    if kind == 8:
        value.flat[rng.integers(value.size)] = [np.nan, np.inf, -np.inf][rng.integers(3)]
        bad = True
    elif kind == 9:
        value = value.reshape(-1)
        bad = value.ndim != valid[name].ndim
    elif kind == 10:
        value = value[None]
        bad = True
    elif kind == 11:
        value = value[:0]  # zero rows
        bad = role != "probes"  # zero probes is an empty request, not an error
    elif kind == 12:
        value = value[:, :-1] if value.ndim == 2 else value[:-1]
        bad = not (role == "teacher" and name == "c")  # a teacher may have one feature fewer
    elif kind == 13:
        value = value.T.copy()
        bad = value.shape != valid[name].shape and not (role == "teacher" and name == "c")
    elif kind == 14:
        value = value.astype(str)
        bad = True
    elif kind == 15:
        value = value.astype(np.complex128)
        bad = True
    elif kind == 16:
        value = value * 10.0 ** rng.integers(100, 308)  # overflow downstream
        bad = False
    elif kind == 17:
        value = np.zeros_like(value)
        bad = role in ("measure", "data")  # Σ_µµ singular (p = 0 does not sum to 1)
    elif kind == 18:
        value = -np.abs(value)
        bad = name == "p"
    elif kind == 19:
        value = value * 3.0
        bad = name == "p"
    elif kind == 20:
        value = np.array(7.0)  # a 0-d scalar
        bad = True
    elif kind == 21:
        value = np.repeat(value[:1], value.shape[0], axis=0)  # every particle identical
        # identical neurons (or rows of data): h_µ has rank 1 < k = 3; p no longer sums to 1
        bad = role in ("measure", "data") and valid[name].shape[0] > 1
        if role == "measure" and name == "p":
            bad = bad and not np.allclose(valid["p"], valid["p"][0])
    elif kind == 22:
        value = value.astype(np.float16)
        bad = False
    else:
        value = np.zeros((3, 3), dtype=[("x", "f8"), ("y", "i4")])  # structured
        bad = True
    arrays[name] = value
    return _npz_bytes(**arrays), bad, kind, name


# ------------------------------------------------------------------ the fuzzers
@dataclass
class Tally:
    tried: int = 0
    status: dict = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        self.tried += 1
        self.status[outcome.status] = self.status.get(outcome.status, 0) + 1


def _cases(workdir: Path, capsys, count: int, seed: int, make: Callable, tally: Tally) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        args, bad, label = make(workdir, rng, i)
        before = sorted(os.listdir(workdir))
        outcome = run_in_process(args, capsys)
        check_outcome(outcome, bad, label)
        assert sorted(os.listdir(workdir)) == before, f"[{label}] a file was written"
        tally.add(outcome)


def _default_args(workdir: Path, problem: str = "exact_inf") -> list[str]:
    return ["--problem", str(workdir / f"{problem}.toml"), "--measure", str(workdir / "measure.npz"),
            "--probes", str(workdir / "probes.npz")]


def make_toml_case(workdir: Path, rng: np.random.Generator, i: int):
    base = list(BASE_PROBLEMS)[rng.integers(len(BASE_PROBLEMS))]
    target = workdir / f"fuzz_{i}.toml"
    mode = rng.integers(0, 10)
    bad = False
    if mode == 0:
        target.write_bytes(bytes(rng.integers(0, 256, size=rng.integers(0, 300), dtype=np.uint8)))
        label = f"random-bytes/{base}"
        bad = None  # random bytes are almost surely invalid, but not provably
    elif mode <= 3:
        target.write_text(mutate_text(toml_dumps(BASE_PROBLEMS[base]), rng), encoding="utf-8", errors="replace")
        label = f"text/{base}"
    else:
        doc, bad = BASE_PROBLEMS[base], False
        for _ in range(rng.integers(1, 3)):
            doc, bad = mutate_document(doc, rng)
            if bad:  # a later deletion could undo what made it surely bad
                break
        target.write_text(toml_dumps(keep_cheap(doc)), encoding="utf-8")
        label = f"doc/{base}: {json.dumps(doc, default=str)[:300]}"
    args = _default_args(workdir)
    args[1] = str(target)
    return args, bool(bad), label


def make_support_case(workdir: Path, rng: np.random.Generator, i: int):
    """Corrupt the teacher ``.npz`` or the empirical ``.npy`` a valid problem points to."""
    folder = workdir / f"support_{i}"
    folder.mkdir()
    if rng.random() < 0.5:
        (folder / "p.toml").write_text(toml_dumps(BASE_PROBLEMS["exact_finite"]), encoding="utf-8")
        valid = {"c": np.eye(3), "u": 0.8 * np.eye(6)[:3]}
        raw, bad, what = corrupt_arrays(valid, rng, "teacher")
        (folder / "teacher_weights.npz").write_bytes(raw)
        label = f"teacher-npz {what}"
    else:
        (folder / "p.toml").write_text(toml_dumps(BASE_PROBLEMS["empirical"]), encoding="utf-8")
        x = rng.standard_normal((50, 6))
        raw, bad, what = corrupt_arrays({"x": x}, rng, "data")
        member = _extract_member(raw, "x")
        (folder / "x.npy").write_bytes(member if member is not None else raw)
        label = f"data-npy {what}"
    args = _default_args(workdir)
    args[1] = str(folder / "p.toml")
    return args, bad, label


def _extract_member(raw: bytes, name: str) -> bytes | None:
    """The ``name.npy`` member of an archive, if ``raw`` is a readable archive (else None)."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            return archive.read(f"{name}.npy")
    except Exception:  # noqa: BLE001 - a corrupt archive is used as it is
        return None


def make_measure_case(workdir: Path, rng: np.random.Generator, i: int):
    m = int(rng.integers(1, 7))
    valid = {"a": rng.standard_normal((m, 3)), "w": 0.5 * rng.standard_normal((m, 6))}
    if rng.random() < 0.5:
        valid["p"] = rng.dirichlet(np.ones(m))
    raw, bad, what = corrupt_arrays(valid, rng, "measure")
    target = workdir / f"measure_{i}.npz"
    target.write_bytes(raw)
    problem = ["exact_inf", "mc_sphere", "exact_inf", "empirical"][rng.integers(4)]
    args = _default_args(workdir, problem)
    args[3] = str(target)
    return args, bad, f"measure/{problem} {what}"


def make_probe_case(workdir: Path, rng: np.random.Generator, i: int):
    q = int(rng.integers(1, 4))
    valid = {"a": rng.standard_normal((q, 3)), "w": 0.5 * rng.standard_normal((q, 6))}
    raw, bad, what = corrupt_arrays(valid, rng, "probes")
    target = workdir / f"probes_{i}.npz"
    target.write_bytes(raw)
    args = _default_args(workdir)
    args[5] = str(target)
    return args, bad, f"probes {what}"


FAMILIES = {
    "toml": (make_toml_case, 1),
    "support": (make_support_case, 2),
    "measure": (make_measure_case, 3),
    "probes": (make_probe_case, 4),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzz_quick(workdir, capsys, family):
    make, seed = FAMILIES[family]
    tally = Tally()
    _cases(workdir, capsys, QUICK_CASES, seed, make, tally)
    assert tally.tried == QUICK_CASES
    assert tally.status.get(2, 0) > 0  # the fuzzer does reach the error paths


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzz_slow(workdir, capsys, family):
    make, seed = FAMILIES[family]
    tally = Tally()
    _cases(workdir, capsys, SLOW_CASES, 1000 + seed, make, tally)
    assert tally.tried == SLOW_CASES
    assert tally.status.get(2, 0) > SLOW_CASES // 4


# ------------------------------------------------------------ deliberate bad input
def _bad_problem_docs() -> list[tuple[str, dict]]:
    base = BASE_PROBLEMS["exact_inf"]
    cases = []

    def variant(label, table, key, value, base=base):
        doc = json.loads(json.dumps(base))
        if value is _DELETE:
            doc[table].pop(key, None)
        else:
            doc.setdefault(table, {})[key] = value
        cases.append((label, doc))

    for value in (0, -1, 10**18, 1.5, "6", True, math.nan):
        variant(f"dim={value!r}", "input", "dim", value)
    for value in (-0.1, math.nan, math.inf, "0.1", [0.1], 1e300):
        variant(f"noise={value!r}", "task", "noise", value)
    for value in (0, -5, 2.5, "infinity", math.inf, True, 10**40):
        variant(f"prompt_length={value!r}", "task", "prompt_length", value)
    for value in ("softmax", 3, "", ["erf"]):
        variant(f"activation={value!r}", "model", "activation", value)
    for value in (0, -3, 10**18, 2.0):
        variant(f"features={value!r}", "model", "features", value)
    for value in (0, -1, 10**15, 2**63 - 1):  # on a Monte Carlo problem, where samples are used
        variant(f"samples={value!r}", "expectation", "samples", value, BASE_PROBLEMS["mc_sphere"])
    for value in (0, 10**9, 2**63 - 1):
        variant(f"hermite_order={value!r}", "expectation", "hermite_order", value)
    for value in (0.0, -0.1, 1e-9, math.nan):
        variant(f"hermite_step={value!r}", "expectation", "hermite_step", value)
    for value in (0, 10**15):  # at finite N, where the exact backend samples Q_µ
        variant(f"fourth_moment_samples={value!r}", "expectation", "fourth_moment_samples", value,
                BASE_PROBLEMS["exact_finite"])
    for value in (0.0, 1.0, -1e-3, math.nan):
        variant(f"singular_rtol={value!r}", "expectation", "singular_rtol", value)
    for value in ("bogus", "empirical", 1):
        variant(f"method={value!r}", "expectation", "method", value)
    for value in (-1, "0", 1.0):
        variant(f"seed={value!r}", "expectation", "seed", value)
    variant("c ragged", "teacher", "c", [[1.0, 0.0], [0.0]])
    variant("c wrong rows", "teacher", "c", [[1.0, 0.0, 0.0]])
    variant("u nan", "teacher", "u", [[math.nan] * 6] * 3)
    # u = 1e300 is no longer bad input: the erf kernel is overflow-free and gives the sign-kernel
    # limit (tests/model/test_kernel_extremes.py checks its value)
    variant("c huge", "teacher", "c", [[1e300] * 3] * 3)
    variant("u 3-D", "teacher", "u", [[[1.0]]])
    variant("u empty", "teacher", "u", [])
    variant("c strings", "teacher", "c", [["a"] * 3] * 3)
    variant("c missing", "teacher", "c", _DELETE)
    variant("file and c", "teacher", "file", "teacher_weights.npz")
    variant("missing teacher file", "teacher", "file", "nope.npz")
    variant("data without empirical", "input", "data", "x.npy")
    variant("sphere with exact", "input", "law", "sphere")
    variant("unknown key", "task", "temperature", 1.0)
    variant("bias not bool", "model", "bias", 1)
    variant("bias changes w columns", "model", "bias", True)
    doc = json.loads(json.dumps(base))
    doc["extra"] = {"x": 1}
    cases.append(("unknown table", doc))
    doc = json.loads(json.dumps(base))
    del doc["teacher"]
    cases.append(("no teacher", doc))
    doc = json.loads(json.dumps(base))
    doc["init"] = 5
    cases.append(("init not a table", doc))
    doc = json.loads(json.dumps(BASE_PROBLEMS["empirical"]))
    doc["input"]["data"] = "missing.npy"
    cases.append(("missing data file", doc))
    doc = json.loads(json.dumps(BASE_PROBLEMS["empirical"]))
    doc["expectation"] = {"method": "monte_carlo", "samples": 10_000}
    cases.append(("more samples than rows", doc))
    variant("noise=10**400", "task", "noise", 10**400)
    variant("c with 10**400", "teacher", "c", [[10**400, 0, 0], [0, 1, 0], [0, 0, 1]])
    variant("prompt_length=10**400", "task", "prompt_length", 10**400)
    variant("ridge=-1", "expectation", "ridge", -1.0)
    variant("ridge=nan", "expectation", "ridge", math.nan)
    return cases


_DELETE = object()
BAD_DOCS = _bad_problem_docs()


@pytest.mark.parametrize("label, doc", BAD_DOCS, ids=[label for label, _ in BAD_DOCS])
def test_bad_problem_values_exit_2(workdir, capsys, label, doc):
    path = workdir / "bad.toml"
    path.write_text(toml_dumps(doc), encoding="utf-8")
    args = _default_args(workdir)
    args[1] = str(path)
    check_outcome(run_in_process(args, capsys), bad=True, label=label)


BAD_DATA = {
    "pickled objects": lambda: np.array([{"x": 1}, None], dtype=object),
    "nan": lambda: np.full((10, 6), np.nan),
    "1-D": lambda: np.zeros(6),
    "3-D": lambda: np.zeros((2, 3, 6)),
    "wrong columns": lambda: np.zeros((10, 5)),
    "zero rows": lambda: np.zeros((0, 6)),
    "strings": lambda: np.full((3, 6), "a"),
    "complex": lambda: np.ones((3, 6), dtype=complex),
    "bool": lambda: np.ones((3, 6), dtype=bool),
    "structured": lambda: np.zeros(3, dtype=[("x", "f8")]),
    "huge values": lambda: np.full((10, 6), 1e300),
}


@pytest.mark.parametrize("label", list(BAD_DATA))
def test_bad_empirical_data_exit_2(workdir, capsys, label):
    value = BAD_DATA[label]()
    if value.dtype == object:
        np.save(workdir / "x.npy", value, allow_pickle=True)
    else:
        np.save(workdir / "x.npy", value)
    args = _default_args(workdir, "empirical")
    check_outcome(run_in_process(args, capsys), bad=True, label=label)


@pytest.mark.parametrize("payload", [b"", b"\x93NUMPY garbage", b"PK\x03\x04junk", b"\x80\x04K\x01."])
def test_bad_empirical_bytes_exit_2(workdir, capsys, payload):
    (workdir / "x.npy").write_bytes(payload)
    check_outcome(run_in_process(_default_args(workdir, "empirical"), capsys), bad=True, label=repr(payload))


def test_empirical_data_that_is_an_archive_exit_2(workdir, capsys):
    (workdir / "x.npy").write_bytes(_npz_bytes(x=np.zeros((5, 6))))
    check_outcome(run_in_process(_default_args(workdir, "empirical"), capsys), bad=True, label="npz as npy")


@pytest.mark.parametrize(
    "which, path",
    [("--problem", "missing.toml"), ("--measure", "missing.npz"), ("--probes", "missing.npz"),
     ("--problem", "."), ("--measure", ".")],
)
def test_missing_or_directory_paths_exit_2(workdir, capsys, which, path):
    args = _default_args(workdir)
    args[args.index(which) + 1] = str(workdir / path)
    check_outcome(run_in_process(args, capsys), bad=True, label=f"{which} {path}")


def test_bad_command_lines_exit_2(workdir, capsys):
    for argv in (["--problem"], ["--measure", "x"], ["--problem", "a", "--measure", "b", "--bogus"],
                 [*_default_args(workdir), "--device", "tpu"]):
        check_outcome(run_in_process(argv, capsys), bad=True, label=str(argv))


# ------------------------------------------------------------- a real interpreter
def _command() -> list[str]:
    script = shutil.which("landscape", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "landscape.cli"]


def _run_subprocess(args: list[str]) -> Outcome:
    env = {k: v for k, v in os.environ.items() if k != "LANDSCAPE_DEBUG"}
    proc = subprocess.run([*_command(), "evaluate", *args, "--json"], capture_output=True, text=True,
                          timeout=120, env=env)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


#: runs several ``main`` calls in one fresh interpreter, stderr unredirected (warnings
#: included), a marker line between cases; prints the exit statuses as JSON.
_DRIVER = """
import json, sys
from landscape.cli import main
statuses = []
for args in json.loads(sys.argv[1]):
    statuses.append(main(["evaluate", *args, "--json"]))
    sys.stdout.flush()
    print("@@case-end@@", file=sys.stderr, flush=True)
print("@@statuses@@" + json.dumps(statuses))
"""


def test_subprocess_real_stderr(workdir):
    """Bad inputs in a real interpreter: the real stderr has one line (no warnings, no traceback)."""
    cases = []
    (workdir / "pickled.npz").write_bytes(_pickle_npz("a", {"w": np.ones((2, 6))}))
    cases.append((["--measure", str(workdir / "pickled.npz")], "pickled measure"))
    (workdir / "huge.npz").write_bytes(_huge_header_npz("a", {"w": np.ones((2, 6))}))
    cases.append((["--measure", str(workdir / "huge.npz")], "huge header"))
    np.savez(workdir / "overflow.npz", a=np.full((2, 3), 1e300), w=np.ones((2, 6)), p=np.array([1e308, 1e308]))
    cases.append((["--measure", str(workdir / "overflow.npz")], "overflowing weights (numpy warns)"))
    np.savez(workdir / "big.npz", a=np.full((2, 3), 1e200), w=np.ones((2, 6)))
    cases.append((["--measure", str(workdir / "big.npz")], "overflow inside the landscape"))
    doc = json.loads(json.dumps(BASE_PROBLEMS["exact_inf"]))
    doc["task"]["noise"] = 1e300
    (workdir / "noisy.toml").write_text(toml_dumps(doc), encoding="utf-8")
    cases.append((["--problem", str(workdir / "noisy.toml")], "overflowing noise"))
    (workdir / "deep.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    cases.append((["--problem", str(workdir / "deep.toml")], "deeply nested TOML"))
    all_args = []
    for replace, _ in cases:
        args = _default_args(workdir)
        args[args.index(replace[0]) + 1] = replace[1]
        all_args.append(args)
    env = {k: v for k, v in os.environ.items() if k != "LANDSCAPE_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(all_args)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert "@@statuses@@" in proc.stdout, proc.stderr[-2000:]
    statuses = json.loads(proc.stdout.split("@@statuses@@")[1])
    outs = proc.stdout.split("@@statuses@@")[0]
    errs = proc.stderr.split("@@case-end@@\n")[:-1]
    assert len(statuses) == len(errs) == len(cases)
    assert outs == ""
    for status, err, (_, label) in zip(statuses, errs, cases, strict=True):
        check_outcome(Outcome(status, "", err), bad=True, label=label)


def test_console_script_bad_and_valid_input(workdir):
    """The installed ``landscape`` script (or ``python -m landscape.cli``): one bad, one valid run."""
    (workdir / "junk.toml").write_bytes(b"\xff\xfe[[[")
    args = _default_args(workdir)
    args[1] = str(workdir / "junk.toml")
    check_outcome(_run_subprocess(args), bad=True, label="junk toml")
    outcome = _run_subprocess(_default_args(workdir))
    check_outcome(outcome, bad=False, label="valid")
    assert outcome.status == 0
