"""Attack tests (issue 15, "No unexpected exits" and "Clear messages"): hostile files and settings
given to every input-reading command, in process through :func:`landscape.cli.main`.

Each case asserts the command-line contract: exit status 2, exactly one stderr line
``error: …`` that names the problem (a fragment checked per case), no traceback, no
``unexpected`` exit, and nothing written (every output folder compared byte for byte before
and after). The families, with the number of cases each runs (printed, and asserted):

* ``kinds``: a missing file, a directory, a FIFO, a symbolic-link loop, ``/dev/zero``, a 2 GiB
  sparse file, random bytes, an empty file, a truncated ``.npz`` — in every input slot
  (``evaluate --problem/--measure/--probes``, ``analyze --problem/--measure``, ``train
  --problem`` and the files a problem references: ``[teacher] file``, ``[input] data``,
  ``[init] measure``; ``verify --baseline``; ``report``'s ``--problem``/``--measure``);
* ``nesting``: JSON and TOML nested 65 to 100 000 deep in the problem file, ``verify
  --baseline``, ``results.json``, ``analysis.json`` and an evidence file;
* ``types``: every key of ``analysis.json`` and of a ``results.json`` record set to values of
  every JSON type, through ``landscape report``; trajectory cells likewise;
* ``numbers``: absurd finite numbers (±1e200, 1e308, 2⁶³, …) on every number-valued key of
  the problem file: refused naming the key;
* ``sizes``: particle and teacher counts whose kernel matrices would not fit the memory cap;
* ``locks``: a second process on the same ``--out`` (the lock held here) for every command
  that writes a folder, and one real two-process race;
* ``checkpoints``: a checkpoint with a valid checksum over a negative weight, zero weights, a
  negative step or a zero step size: refused on resume;
* ``verify pre-checks``: a bad ``--scheduler`` (malformed, refused, another protocol) and a
  user's folder inside ``verify --out``: refused before anything is written;
* ``disk``: a file-size limit (``RLIMIT_FSIZE``, in process) while ``analyze --out``,
  ``report``, ``verify`` and ``train`` write: one line naming the path, and for the staged
  commands the previous folder exactly as it was.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_fuzz_evaluate import Outcome, run_cli, toml_dumps

from landscape.cli import main
from landscape.io.files import MAX_NESTING, output_lock
from verification import registry

K, D = 2, 3
TEACHER = {"activation": "erf", "c": [[1.0, 0.0], [0.0, 1.0]], "u": [[1.5, 0.0, 0.0], [0.0, 1.5, 0.0]]}
TRAIN = {
    "teacher": TEACHER,
    "init": {"kind": "gaussian", "particles": 3, "seed": 1, "scale": 1.0},
    "dynamics": {"steps": 3, "step_size": 0.05, "integrator": "euler", "checkpoint_every": 2, "record_every": 1},
}
COUNTS: dict[str, int] = {}


# ------------------------------------------------------------------ the oracle
def snapshot(*paths: Path) -> dict[str, bytes]:
    """Every file under ``paths`` (and the hidden siblings a staged write would leave) with its bytes."""
    files: dict[str, bytes] = {}
    for path in paths:
        for where in [path, *path.parent.glob(f".{path.name}.*")]:
            if where.is_file():
                files[str(where)] = where.read_bytes()
            elif where.is_dir():
                files[str(where)] = b"<dir>"
                for item in sorted(where.rglob("*")):
                    files[str(item)] = item.read_bytes() if item.is_file() else b"<dir>"
    return files


def refused(outcome: Outcome, label: str, *fragments: str) -> None:
    """Exit 2, one ``error:`` line holding every fragment (case-insensitive), no traceback."""
    where = f"[{label}] status={outcome.status} stderr={outcome.err[-500:]!r}"
    assert "Traceback" not in outcome.err and "unexpected" not in outcome.err, where
    assert outcome.status == 2, where
    lines = outcome.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), where
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), f"{where}: {fragment!r} not named"


def clean(outcome: Outcome, label: str, ok=(0, 2)) -> None:
    """No traceback, no ``unexpected``, a status in ``ok``; at status 2 one ``error:`` line."""
    where = f"[{label}] status={outcome.status} stderr={outcome.err[-500:]!r}"
    assert "Traceback" not in outcome.err and "unexpected" not in outcome.err, where
    assert outcome.status in ok, where
    if outcome.status == 2:
        lines = outcome.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), where


def attack(argv: list[str], capsys, label: str, outputs: list[Path], *fragments: str) -> None:
    before = snapshot(*outputs)
    outcome = run_cli(argv, capsys)
    refused(outcome, label, *fragments)
    assert snapshot(*outputs) == before, f"[{label}] files written or changed on failure"


# ------------------------------------------------------------------ base inputs
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Valid inputs of every kind, a finished run, an analysis and a verify output (made once)."""
    root = tmp_path_factory.mktemp("attacks")
    rng = np.random.default_rng(5)
    np.savez(root / "mu.npz", a=rng.standard_normal((3, K)), w=0.7 * rng.standard_normal((3, D)))
    np.savez(root / "teacher.npz", c=np.eye(2), u=1.5 * np.eye(3)[:2])
    np.save(root / "x.npy", rng.standard_normal((50, D)))
    (root / "p.toml").write_text(toml_dumps({"teacher": TEACHER}), encoding="utf-8")
    (root / "train.toml").write_text(toml_dumps(TRAIN), encoding="utf-8")
    assert main(["train", "--problem", str(root / "train.toml"), "--out", str(root / "run"), "--quiet"]) == 0
    assert main(["analyze", "--problem", str(root / "p.toml"), "--measure", str(root / "mu.npz"), "--out",
                 str(root / "analysis")]) == 0
    return root


@pytest.fixture
def fast_figures(monkeypatch):
    """Figures built but not drawn (a placeholder image): the families that only feed reports bad
    input test the readers, and drawing each figure would cost ~0.3 s a case."""
    from matplotlib.figure import Figure

    monkeypatch.setattr(Figure, "savefig", lambda self, target, **kwargs: target.write(b"<svg/>"))


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(registry.ALL_CHECKS, "toy", "toy_claim")


def _toy_record() -> dict:
    return {"id": "toy", "statement": "2^10 = 1024", "verdict": "pass", "threshold": "pass: power = 1024",
            "metrics": {"power": {"value": 1024.0, "uncertainty": 0.0, "description": "2^10"}}, "evidence": []}


# ------------------------------------------------------------------ file kinds
def _sparse(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.truncate(2 * 2**30)


def _truncated_npz(path: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, a=np.ones((40, K)), w=np.ones((40, D)))
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])


#: kind → (how to make it at a path, a fragment every refusal names).
KINDS = {
    "missing": (lambda p: None, "does not exist"),
    "directory": (lambda p: p.mkdir(), "not a regular file"),
    "fifo": (lambda p: os.mkfifo(p), "not a regular file"),
    "symlink loop": (lambda p: os.symlink(p.name, p), "loop of symbolic links"),
    "device": (lambda p: os.symlink("/dev/zero", p), "not a regular file"),
    "sparse 2 GiB": (_sparse, ""),
    "random bytes": (lambda p: p.write_bytes(np.random.default_rng(len(str(p))).bytes(300)), ""),
    "empty": (lambda p: p.write_bytes(b""), ""),
    "truncated npz": (_truncated_npz, ""),
}
#: what a file of each format says about random, empty, sparse or truncated content.
FORMAT_FRAGMENT = {"toml": "", "npz": "npz", "npy": "npy", "json": "json"}


def _slots(base: Path, case: Path) -> list[tuple[str, str, list[str], list[Path]]]:
    """(slot, format, argv with the file at ``case / 'f'``, outputs) for every input slot."""
    f = str(case / "f")
    p, mu = str(base / "p.toml"), str(base / "mu.npz")
    out = case / "out"

    def problem(doc: dict) -> str:
        path = case / f"problem_{len(list(case.glob('problem_*.toml')))}.toml"
        path.write_text(toml_dumps(doc), encoding="utf-8")
        return str(path)

    teacher_file = {"file": f}
    train_doc = copy.deepcopy(TRAIN)
    return [
        ("evaluate --problem", "toml", ["evaluate", "--problem", f, "--measure", mu], []),
        ("evaluate --measure", "npz", ["evaluate", "--problem", p, "--measure", f], []),
        ("evaluate --probes", "npz", ["evaluate", "--problem", p, "--measure", mu, "--probes", f], []),
        ("analyze --problem", "toml", ["analyze", "--problem", f, "--measure", mu, "--out", str(out)], [out]),
        ("analyze --measure", "npz", ["analyze", "--problem", p, "--measure", f, "--out", str(out)], [out]),
        ("train --problem", "toml", ["train", "--problem", f, "--out", str(out)], [out]),
        ("[teacher] file", "npz", ["evaluate", "--problem", problem({"teacher": teacher_file}), "--measure", mu], []),
        ("[input] data", "npy", ["evaluate", "--problem", problem(
            {"input": {"law": "empirical", "data": f}, "teacher": TEACHER}), "--measure", mu], []),
        ("[init] measure", "npz", ["train", "--problem", problem(
            {**train_doc, "init": {"kind": "file", "measure": f}}), "--out", str(out)], [out]),
        ("verify --baseline", "json", ["verify", "--claims", "toy", "--out", str(out), "--no-report", "--baseline", f],
         [out]),
        ("report --measure", "npz", ["report", str(base / "analysis"), "--out", str(out), "--measure", f], [out]),
        ("report --problem", "toml", ["report", str(base / "analysis"), "--out", str(out), "--problem", f], [out]),
    ]


SLOTS = 12


def test_file_kinds_in_every_slot(base, tmp_path, capsys, toy):
    """Every kind of file in every input slot: one line saying what it is, nothing written."""
    cases = 0
    for kind, (make, fragment) in KINDS.items():
        for j in range(SLOTS):
            case = tmp_path / f"{kind.replace(' ', '_')}_{j}"
            case.mkdir()
            slot, fmt, argv, outputs = _slots(base, case)[j]
            if kind == "truncated npz" and fmt != "npz":
                continue
            make(case / "f")
            if kind == "empty" and slot == "report --problem":  # an empty TOML document is valid: no teacher to draw
                clean(run_cli(argv, capsys), f"{kind} as {slot}", ok=(0,))
                cases += 1
                continue
            expected = [fragment] if fragment else []
            if kind == "sparse 2 GiB" and fmt in ("toml", "json"):
                expected = ["more than the limit"]
            elif not fragment and fmt in ("npz", "npy"):
                expected = [FORMAT_FRAGMENT[fmt]]
            attack(argv, capsys, f"{kind} as {slot}", outputs, *expected)
            cases += 1
    _count("kinds", cases)
    assert cases == len(KINDS) * SLOTS - (SLOTS - 6)  # truncated npz: the six .npz slots


# ------------------------------------------------------------------ nesting
DEPTHS = (MAX_NESTING + 1, 100, 1000, 10_000, 100_000)


def _deep_json(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def _deep_toml(depth: int, kind: str) -> str:
    value = "[" * depth + "]" * depth if kind == "array" else "{a = " * depth + "1" + "}" * depth
    return f"[teacher]\nc = {value}\n"


def test_deep_nesting_everywhere(base, tmp_path, capsys, toy):
    """JSON and TOML nested past the limit: one line saying so (never a RecursionError)."""
    cases = 0
    for depth in DEPTHS:
        for kind in ("array", "object"):
            case = tmp_path / f"{depth}_{kind}"
            case.mkdir()
            (case / "p.toml").write_text(_deep_toml(depth, kind), encoding="utf-8")
            (case / "b.json").write_text(_deep_json(depth, kind), encoding="utf-8")
            mu = str(base / "mu.npz")
            attack(["evaluate", "--problem", str(case / "p.toml"), "--measure", mu], capsys, f"toml {depth} {kind}", [],
                   "nests", str(MAX_NESTING))
            attack(["train", "--problem", str(case / "p.toml"), "--out", str(case / "run")], capsys,
                   f"train toml {depth} {kind}", [case / "run"], "nests")
            attack(["verify", "--claims", "toy", "--out", str(case / "v"), "--no-report", "--baseline",
                    str(case / "b.json")], capsys, f"baseline {depth} {kind}", [case / "v"], "nests")
            for name in ("results.json", "analysis.json"):
                folder = case / name.split(".")[0]
                folder.mkdir()
                (folder / name).write_text(_deep_json(depth, kind), encoding="utf-8")
                attack(["report", str(folder), "--out", str(case / f"r_{name}")], capsys, f"{name} {depth} {kind}",
                       [case / f"r_{name}"], "nests")
            cases += 5
            # an evidence file: the report notes it cannot draw it and goes on
            folder = case / "verify"
            (folder / "rates").mkdir(parents=True)
            record = {**_toy_record(), "id": "rates", "evidence": ["rates/escape.json"]}
            (folder / "results.json").write_text(json.dumps({"results": [record]}), encoding="utf-8")
            (folder / "rates" / "escape.json").write_text(_deep_json(depth, kind), encoding="utf-8")
            outcome = run_cli(["report", str(folder), "--out", str(case / "r_evidence")], capsys)
            clean(outcome, f"evidence {depth} {kind}", ok=(0,))
            assert "nests" in (case / "r_evidence" / "summary.md").read_text(encoding="utf-8") or "nests" in (
                case / "r_evidence" / "index.html").read_text(encoding="utf-8")
            cases += 1
    _count("nesting", cases)
    assert cases == len(DEPTHS) * 2 * 6


# ------------------------------------------------------------------ wrong types
WEIRD = [None, True, 0, -1, 1e308, "x", "", "\u0000", [], [1, "a"], [[1.0]], {}, {"a": [None]}]


def _paths(obj, prefix=()) -> list[tuple]:
    """Every key path of the objects (not list items) in ``obj``, to depth 3."""
    out = []
    if isinstance(obj, dict) and len(prefix) < 3:
        for key, value in obj.items():
            out.append((*prefix, key))
            out += _paths(value, (*prefix, key))
    return out


def _set(obj, path: tuple, value):
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


def _type_cases(quick: bool, base: Path) -> list[tuple[str, str, dict | list]]:
    analysis = json.loads((base / "analysis" / "analysis.json").read_text(encoding="utf-8"))
    results = {"results": [_toy_record()], "counts": {"regressions": 0}, "provenance": {}}
    cases = []
    for name, doc in (("analysis.json", analysis), ("results.json", results)):
        paths = _paths(doc) + ([("results", 0, key) for key in _toy_record()] if name == "results.json" else [])
        for i, path in enumerate(paths):
            values = WEIRD[i % 4::6] if quick else WEIRD
            cases += [(name, f"{'.'.join(map(str, path))} = {value!r}", _set(doc, path, value)) for value in values]
    return cases


def _check_types(base: Path, tmp_path: Path, capsys, quick: bool) -> int:
    cases = 0
    for i, (name, label, doc) in enumerate(_type_cases(quick, base)):
        folder = tmp_path / f"in_{i}"
        folder.mkdir()
        (folder / name).write_text(json.dumps(doc), encoding="utf-8")
        out = tmp_path / f"out_{i}"
        outcome = run_cli(["report", str(folder), "--out", str(out)], capsys)
        clean(outcome, f"{name}: {label}")
        assert (out / "index.html").is_file() == (outcome.status == 0), label
        cases += 1
    return cases


def test_wrong_types_in_report_inputs(base, tmp_path, capsys, fast_figures):
    """A value of any JSON type at any key of analysis.json or results.json: a report or one line."""
    cases = _check_types(base, tmp_path, capsys, quick=True)
    _count("types", cases)
    assert cases > 80


@pytest.mark.slow
def test_wrong_types_in_report_inputs_all(base, tmp_path, capsys, fast_figures):
    cases = _check_types(base, tmp_path, capsys, quick=False)
    _count("types (slow)", cases)
    assert cases > 400


def test_wrong_cells_in_trajectories(base, tmp_path, capsys, fast_figures):
    """A trajectory cell of any kind (text, NUL, a huge number, a missing column): a report or one line."""
    text = (base / "run" / "trajectory.csv").read_text(encoding="utf-8")
    header, *rows = text.splitlines()
    cells = ["x", "\u0000", "1e999", "nan", "", '"', "1,2", "-", "0x10", "1e308"]
    cases = 0
    for column in range(len(header.split(","))):
        for cell in cells:
            folder = tmp_path / f"run_{column}_{cases}"
            folder.mkdir()
            fields = rows[-1].split(",")
            fields[column] = cell
            (folder / "trajectory.csv").write_text("\n".join([header, *rows[:-1], ",".join(fields)]) + "\n")
            outcome = run_cli(["report", str(folder), "--out", str(folder / "report")], capsys)
            clean(outcome, f"trajectory column {column} = {cell!r}")
            cases += 1
    _count("trajectory cells", cases)
    assert cases >= 100


# ------------------------------------------------------------------ absurd numbers
#: every number-valued key of the problem file, with where it lives.
NUMBER_KEYS = [
    ("task", "noise"), ("task", "loss_star"), ("task", "prompt_length"),
    ("expectation", "samples"), ("expectation", "seed"), ("expectation", "hermite_order"),
    ("expectation", "hermite_step"), ("expectation", "fourth_moment_samples"), ("expectation", "singular_rtol"),
    ("expectation", "ridge"), ("input", "dim"), ("model", "features"),
]
ABSURD = [1e200, -1e200, 1.7e308, -1.7e308, 1e101, -1e101]
#: large integers: accepted where they are meaningful (a seed, a noise level whose square is finite),
#: else refused naming the key; never an overflow or a non-finite number printed.
BIG_INTS = [2**62, 2**63 - 1, -(2**63)]


def test_absurd_numbers_name_their_key(base, tmp_path, capsys):
    """An absurd finite number on any key of the problem file (or in the teacher's weights) is refused naming it."""
    cases = 0
    mu = str(base / "mu.npz")
    for table, key in NUMBER_KEYS:
        for value in ABSURD:
            doc = {"teacher": TEACHER, table: {key: value}}
            if table == "expectation" and key in ("samples",):
                doc[table]["method"] = "monte_carlo"
            path = tmp_path / f"{table}_{key}_{cases}.toml"
            path.write_text(toml_dumps(doc), encoding="utf-8")
            attack(["evaluate", "--problem", str(path), "--measure", mu], capsys, f"[{table}] {key} = {value!r}", [],
                   f"{key}")
            cases += 1
        for value in BIG_INTS:
            path = tmp_path / f"{table}_{key}_{cases}.toml"
            path.write_text(toml_dumps({"teacher": TEACHER, table: {key: value}}), encoding="utf-8")
            outcome = run_cli(["evaluate", "--problem", str(path), "--measure", mu, "--json"], capsys)
            label = f"[{table}] {key} = {value!r}"
            clean(outcome, label)
            if outcome.status == 2:
                assert key in outcome.err, label
            else:
                json.loads(outcome.out, parse_constant=lambda name: pytest.fail(f"[{label}] printed {name}"))
            cases += 1
    for name in ("c", "u"):
        for value in ABSURD[:5]:
            teacher = copy.deepcopy(TEACHER)
            teacher[name][0][0] = value
            path = tmp_path / f"teacher_{name}_{cases}.toml"
            path.write_text(toml_dumps({"teacher": teacher}), encoding="utf-8")
            attack(["evaluate", "--problem", str(path), "--measure", mu], capsys, f"[teacher] {name} = {value!r}", [],
                   f"[teacher] {name}")
            cases += 1
    _count("numbers", cases)
    assert cases == len(NUMBER_KEYS) * (len(ABSURD) + len(BIG_INTS)) + 10


# ------------------------------------------------------------------ sizes
def test_sizes_are_checked_before_allocating(base, tmp_path, capsys, monkeypatch):
    """Particle and teacher counts whose kernel matrices exceed the memory cap: refused naming the key and the memory."""
    cases = 0
    for m in (20_000, 100_000, 1_000_000):
        np.savez(tmp_path / f"m{m}.npz", a=np.ones((m, K)), w=np.zeros((m, D)))
        for command in ("evaluate", "analyze"):
            attack([command, "--problem", str(base / "p.toml"), "--measure", str(tmp_path / f"m{m}.npz")], capsys,
                   f"{command} M={m}", [], f"M = {m}", "memory limit", "LANDSCAPE_MAX_MEMORY")
            cases += 1
        doc = copy.deepcopy(TRAIN)
        doc["init"]["particles"] = m
        (tmp_path / f"t{m}.toml").write_text(toml_dumps(doc), encoding="utf-8")
        attack(["train", "--problem", str(tmp_path / f"t{m}.toml"), "--out", str(tmp_path / f"run{m}")], capsys,
               f"[init] particles = {m}", [tmp_path / f"run{m}"], "[init] particles", "memory limit")
        np.savez(tmp_path / f"teacher{m}.npz", c=np.ones((m, 2)), u=np.ones((m, D)))
        (tmp_path / f"big{m}.toml").write_text(toml_dumps({"teacher": {"file": f"teacher{m}.npz"}}), encoding="utf-8")
        attack(["evaluate", "--problem", str(tmp_path / f"big{m}.toml"), "--measure", str(base / "mu.npz")], capsys,
               f"teacher L={m}", [], "[teacher]", f"L = {m}", "memory limit")
        cases += 2
    monkeypatch.setenv("LANDSCAPE_MAX_MEMORY", "1M")  # the cap is a setting: a small one refuses a small measure
    attack(["evaluate", "--problem", str(base / "p.toml"), "--measure", str(tmp_path / "m20000.npz")], capsys,
           "cap 1M", [], "1 MiB")
    monkeypatch.setenv("LANDSCAPE_MAX_MEMORY", "lots")
    attack(["evaluate", "--problem", str(base / "p.toml"), "--measure", str(base / "mu.npz")], capsys,
           "cap lots", [], "LANDSCAPE_MAX_MEMORY")
    _count("sizes", cases + 2)


# ------------------------------------------------------------------ locks
def _lock_cases(base: Path, tmp_path: Path) -> list[tuple[str, list[str], Path]]:
    cases = []
    for i in range(5):
        out = tmp_path / f"busy_{i}"
        cases += [
            ("train", ["train", "--problem", str(base / "train.toml"), "--out", str(out / "run")], out / "run"),
            ("analyze", ["analyze", "--problem", str(base / "p.toml"), "--measure", str(base / "mu.npz"), "--out",
                         str(out / "an")], out / "an"),
            ("report", ["report", str(base / "analysis"), "--out", str(out / "rep")], out / "rep"),
            ("verify", ["verify", "--claims", "toy", "--no-baseline", "--out", str(out / "ver")], out / "ver"),
        ]
    return cases


def test_a_second_process_on_the_same_out_is_refused(base, tmp_path, capsys, toy):
    """Another process holds ``--out``: every writing command is refused in one line, nothing written."""
    cases = 0
    for command, argv, out in _lock_cases(base, tmp_path):
        if cases % 2:  # half on a folder that already holds the command's previous output
            assert main(argv) in (0, 1)
            capsys.readouterr()
        with output_lock(out):
            attack(argv, capsys, f"{command} locked", [out], "in use by another landscape process", out.name)
        cases += 1
    _count("locks", cases)
    assert cases == 20


@pytest.mark.slow
def test_two_real_processes_race_for_one_out(base, tmp_path):
    """Two ``landscape train`` processes started together on one ``--out``: one runs, the other is refused."""
    doc = copy.deepcopy(TRAIN)
    doc["dynamics"]["steps"] = 400
    (tmp_path / "slow.toml").write_text(toml_dumps(doc), encoding="utf-8")
    argv = [sys.executable, "-m", "landscape.cli", "train", "--problem", str(tmp_path / "slow.toml"),
            "--out", str(tmp_path / "run"), "--quiet"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    statuses = sorted(status for status, _ in results)
    assert statuses in ([0, 2], [0, 0]), results  # [0, 0]: the first finished before the second started
    for status, err in results:
        if status == 2:
            assert err.strip().startswith("error:") and ("in use" in err or "already holds a run" in err), err
    _count("locks (processes)", 2)


# ------------------------------------------------------------------ disk full
@contextlib.contextmanager
def file_size_limit(limit: int):
    """``RLIMIT_FSIZE`` = ``limit`` bytes for this process (``SIGXFSZ`` ignored: writes fail with EFBIG)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


LIMITS = (0, 1, 200, 2000, 20_000)


def test_disk_full_names_the_path(base, tmp_path, capsys, toy):
    """A write that fails (file-size limit) ends in one line naming the file; staged folders stay as they were."""
    cases = 0
    for limit in LIMITS:
        case = tmp_path / f"limit_{limit}"
        case.mkdir()
        commands = {
            "analyze": (["analyze", "--problem", str(base / "p.toml"), "--measure", str(base / "mu.npz"), "--out",
                         str(case / "an")], case / "an", True),
            "report": (["report", str(base / "analysis"), "--out", str(case / "rep")], case / "rep", True),
            "verify": (["verify", "--claims", "toy", "--no-baseline", "--out", str(case / "ver")], case / "ver", False),
            "train": (["train", "--problem", str(base / "train.toml"), "--out", str(case / "run"), "--quiet"],
                      case / "run", False),
        }
        for command, (argv, out, staged) in commands.items():
            for existing in (False, True) if command != "train" else (False,):  # a train rerun is --resume's matter
                argv = [str(out) + "_old" if a == str(out) else a for a in argv] if existing else argv
                out = Path(str(out) + "_old") if existing else out
                if existing:  # a previous complete output that a failed rerun must leave intact
                    assert main(argv) in (0, 1)
                    capsys.readouterr()
                before = snapshot(out)
                with file_size_limit(limit):
                    outcome = run_cli(argv, capsys)
                label = f"{command} limit {limit} existing={existing}"
                if outcome.status != 2:  # the output fitted under the limit
                    clean(outcome, label, ok=(0, 1))
                    continue
                if command == "verify":  # progress lines come first; the failure is the last line, and the only error
                    lines = outcome.err.splitlines()
                    assert "Traceback" not in outcome.err and "unexpected" not in outcome.err, label
                    assert [line for line in lines if line.startswith("error")] == lines[-1:], (label, lines)
                    assert "cannot write" in lines[-1] and str(case) in lines[-1], (label, lines)
                else:
                    refused(outcome, label, "cannot write", str(case))
                if staged:
                    assert snapshot(out) == before, f"[{label}] the previous folder changed"
                elif command == "verify" and (out / "results.json").exists():  # all claims ran; the report failed
                    from reports.inputs import read_verify

                    assert [c.id for c in read_verify(out / "results.json").claims] == ["toy"], label
                cases += 1
    _count("disk", cases)
    assert cases >= len(LIMITS) * 4


# ------------------------------------------------------------------ crafted checkpoints
def _crafted_checkpoint(source: bytes, change) -> bytes:
    """``source`` (a checkpoint) with ``change(arrays)`` applied and its sha256 recomputed (a valid checksum)."""
    from landscape.dynamics.rundir import _digest

    with np.load(io.BytesIO(source)) as npz:
        arrays = {name: npz[name] for name in npz.files if name != "sha256"}
    change(arrays)
    digest = _digest({k: np.asarray(v) for k, v in arrays.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, sha256=np.frombuffer(digest.encode(), np.uint8))
    return buffer.getvalue()


def _weights(arrays: dict, value: float, index: int) -> None:
    """Set the weight ``p`` of particle ``index`` in the flat state (layout: a (M·k), w (M·d), p (M), D)."""
    m = (arrays["y"].size - 1) // (K + D + 1)
    arrays["y"] = arrays["y"].copy()
    arrays["y"][m * (K + D) + index] = value


CRAFTED = {
    "negative weight": (lambda a: _weights(a, -0.25, 0), "negative weight"),
    "negative last weight": (lambda a: _weights(a, -1e-300, 2), "negative weight"),
    "all weights zero": (lambda a: [_weights(a, 0.0, j) for j in range(3)], "total"),
    "negative step": (lambda a: a.update(step=np.array(-3, np.int64)), "invalid step"),
    "fractional rows": (lambda a: a.update(rows=np.array(2.5)), "invalid step"),
    "zero step size": (lambda a: a.update(step_size=np.array(0.0)), "invalid step"),
    "negative step size": (lambda a: a.update(step_size=np.array(-1e-3)), "invalid step"),
}


def test_crafted_checkpoints_with_valid_checksums_are_refused(base, tmp_path, capsys):
    """A checkpoint whose checksum matches but whose state no run reaches: refused on resume, nothing written."""
    doc = copy.deepcopy(TRAIN)
    doc["dynamics"]["steps"] = 8
    (tmp_path / "t.toml").write_text(toml_dumps(doc), encoding="utf-8")
    assert main(["train", "--problem", str(tmp_path / "t.toml"), "--out", str(tmp_path / "ref"), "--quiet"]) == 0
    capsys.readouterr()
    source = (tmp_path / "ref" / "checkpoint.npz").read_bytes()
    cases = 0
    for label, (change, fragment) in CRAFTED.items():
        run = tmp_path / label.replace(" ", "_")
        run.mkdir()
        for item in (tmp_path / "ref").iterdir():
            if item.is_file():
                (run / item.name).write_bytes(item.read_bytes())
        (run / "checkpoint.npz").write_bytes(_crafted_checkpoint(source, change))
        attack(["train", "--problem", str(tmp_path / "t.toml"), "--out", str(run), "--resume"], capsys, label, [run],
               fragment, "cannot be resumed")
        cases += 1
    _count("checkpoints", cases)


# ------------------------------------------------------------------ scheduler and evidence folders
def test_scheduler_and_user_folders_are_refused_before_writing(base, tmp_path, capsys, toy):
    """A bad ``--scheduler`` and a user's folder inside ``verify --out``: one line, nothing written."""
    out = tmp_path / "ver"
    cases = 0
    for address, fragment in (("BADADDR", "not a scheduler address"), ("tcp://127.0.0.1:1", "cannot reach"),
                              ("inproc://x", "protocol"), ("tcp://h:99999", "port"), ("tcp://:80", "host")):
        attack(["verify", "--claims", "toy", "--no-baseline", "--out", str(out), "--scheduler", address], capsys,
               f"scheduler {address}", [out], fragment, address)
        cases += 1
    (out / "toy").mkdir(parents=True)
    (out / "toy" / "mine.txt").write_text("a user's file\n")
    attack(["verify", "--claims", "toy", "--no-baseline", "--out", str(out), "--force"], capsys, "user folder", [out],
           "not made by landscape verify")
    _count("verify pre-checks", cases + 1)


# ------------------------------------------------------------------ the count
def _count(family: str, cases: int) -> None:
    COUNTS[family] = COUNTS.get(family, 0) + cases
    print(f"[attacks] {family}: {cases} cases")


def teardown_module() -> None:
    if COUNTS:
        print(f"\n[attacks] cases per family: {COUNTS} (total {sum(COUNTS.values())})")
