"""Fuzzing every file the tool reads besides ``evaluate``'s (issue 8).

Same contract as :mod:`test_fuzz_evaluate` (whose helpers are reused): bad input ends with
exit status 2, exactly one stderr line starting with ``error:``, no traceback, no hang and
nothing written (the output folders are compared byte for byte before and after). Input
that happens to be valid runs to its end (status 0, or 1 where the command says so: a
training run stopped as data, a verification regression).

Families: ``train`` problem files (the ``[init]`` and ``[dynamics]`` tables mutated: unknown
keys, wrong types, NaN / huge / negative values; text mutations), the ``[init]`` measure
file, ``analyze``'s ``[analysis]`` table and measure, ``verify --baseline`` JSON,
``report`` inputs (``results.json``, ``trajectory.csv``, ``analysis.json``) and
``checkpoint.npz`` on ``train --resume`` (random, truncated, flipped, rewritten arrays with
and without a matching checksum). In-process through :func:`landscape.cli.main`, seeded,
the number of cases asserted; the large variant is marked ``slow``.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import shutil
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from test_fuzz_evaluate import (
    Outcome,
    Tally,
    _npz_bytes,
    corrupt_arrays,
    mutate_text,
    run_cli,
    toml_dumps,
    weird_values,
)

from landscape.cli import main
from landscape.dynamics.rundir import _digest
from verification import registry

QUICK_CASES = 25
SLOW_CASES = 400


# ------------------------------------------------------------------ the oracle
def snapshot(*folders: Path) -> dict[str, bytes]:
    """Every file under ``folders`` with its bytes (to prove nothing was written)."""
    files = {}
    for folder in folders:
        if folder.exists():
            for path in sorted(folder.rglob("*")):
                files[str(path)] = path.read_bytes() if path.is_file() else b"<dir>"
    return files


def check_contract(outcome: Outcome, bad: bool | None, label: str, before: dict, after: dict, ok=(0,)) -> None:
    """Status 2: one ``error:`` line, empty stdout, nothing written. Else a status in ``ok``."""
    where = f"[{label}] status={outcome.status} stderr={outcome.err[-400:]!r} stdout={outcome.out[:200]!r}"
    assert "Traceback" not in outcome.err and "unexpected" not in outcome.err, where
    if outcome.status == 2:
        lines = outcome.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), where
        assert outcome.out == "", where
        assert after == before, f"{where}: files written or changed on failure"
        return
    assert not bad, f"{where}: invalid input accepted"
    assert outcome.status in ok, where
    assert not any(line.startswith("error") for line in outcome.err.splitlines()), where


# ------------------------------------------------------------------ base inputs
K, D = 2, 3
TRAIN_BASE: dict = {
    "teacher": {"activation": "erf", "c": [[1.0, 0.0], [0.0, 1.0]], "u": [[1.5, 0.0, 0.0], [0.0, 1.5, 0.0]]},
    "init": {"kind": "gaussian", "particles": 3, "seed": 1, "scale": 1.0},
    "dynamics": {
        "steps": 3,
        "step_size": 0.05,
        "integrator": "euler",
        "checkpoint_every": 2,
        "record_every": 1,
        "seed": 0,
        "birth_death": {"kind": "none", "rate": 1.0},
        "perturbation": {"kind": "none", "g_thr": 1e-3, "t_thr": 1.0, "radius": 1e-2},
    },
}
INIT_KEYS = ("kind", "particles", "scale", "radius", "seed", "measure", "saddle_tol")
DYNAMICS_KEYS = (
    "steps",
    "time",
    "step_size",
    "integrator",
    "rtol",
    "atol",
    "timescale_ratio",
    "record_every",
    "snapshot_every",
    "checkpoint_every",
    "seed",
    "birth_death",
    "perturbation",
)
#: keys whose value, when not a finite number, is surely refused.
NUMERIC = {
    "particles",
    "scale",
    "radius",
    "seed",
    "saddle_tol",
    "steps",
    "time",
    "step_size",
    "rtol",
    "atol",
    "record_every",
    "snapshot_every",
    "checkpoint_every",
    "rate",
    "g_thr",
    "t_thr",
}


def _measure_arrays(rng: np.random.Generator, m: int = 3) -> dict[str, np.ndarray]:
    return {"a": rng.standard_normal((m, K)), "w": 0.7 * rng.standard_normal((m, D))}


def make_cheap(doc: dict) -> dict:
    """Bound the work a valid mutated run may do (≤ ~60 steps of ≤ 20 particles)."""
    init, dyn = doc.get("init"), doc.get("dynamics")
    if isinstance(init, dict) and isinstance(init.get("particles"), int) and not isinstance(init["particles"], bool):
        if init["particles"] > 20:
            init["particles"] = 20
    if isinstance(dyn, dict):
        steps = dyn.get("steps")
        if isinstance(steps, int) and not isinstance(steps, bool) and steps > 60:
            dyn["steps"] = 60
        t, h = dyn.get("time"), dyn.get("step_size", 0.01)
        if _finite(t) and t > 0 and (not _finite(h) or h <= 0 or t / h > 60 or t > 3.0):
            dyn["time"] = min(3.0, 60 * h) if _finite(h) and h > 0 else 0.3
        if _finite(h) and 0 < h < 1e-3:
            dyn["step_size"] = 1e-3
        if not isinstance(dyn.get("steps"), int) and "time" not in dyn:
            pass  # a bad or missing steps: the default 1000 would be slow
        if "steps" not in dyn and "time" not in dyn:
            dyn["steps"] = 5
        for key in ("rtol", "atol"):  # tiny tolerances: many rejected adaptive steps
            if _finite(dyn.get(key)) and 0 < dyn[key] < 1e-8:
                dyn[key] = 1e-8
    return doc


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mutate_train_doc(doc: dict, rng: np.random.Generator) -> tuple[dict, bool | None, str]:
    """One mutation of the ``[init]``/``[dynamics]`` tables; (doc, surely bad or None, what)."""
    doc = copy.deepcopy(doc)
    kind = int(rng.integers(0, 6))
    table_name = ["init", "dynamics", "dynamics.birth_death", "dynamics.perturbation"][rng.integers(4)]
    parts = table_name.split(".")
    table = doc[parts[0]] if len(parts) == 1 else doc["dynamics"][parts[1]]
    keys = list(table)
    if kind == 0:  # unknown key
        table[f"bogus_{rng.integers(100)}"] = 1
        return doc, True, f"unknown key in [{table_name}]"
    if kind == 1 and keys:  # delete a key
        key = keys[rng.integers(len(keys))]
        del table[key]
        return doc, False, f"deleted [{table_name}] {key}"
    if kind == 2:  # the table is not a table
        if len(parts) == 1:
            doc[parts[0]] = [1, 2] if rng.random() < 0.5 else "x"
        else:
            doc["dynamics"][parts[1]] = 3
        return doc, True, f"[{table_name}] not a table"
    if kind == 3:  # a non-finite number on a numeric key
        key = [k for k in keys if k in NUMERIC] or ["steps"]
        key = key[rng.integers(len(key))]
        table[key] = [math.nan, math.inf, -math.inf][rng.integers(3)]
        return doc, True, f"[{table_name}] {key} non-finite"
    # any weird value on any known key (or a string on a numeric key)
    known = {
        "init": INIT_KEYS,
        "dynamics": DYNAMICS_KEYS,
        "dynamics.birth_death": ("kind", "rate"),
        "dynamics.perturbation": ("kind", "g_thr", "t_thr", "radius"),
    }[table_name]
    key = known[rng.integers(len(known))]
    values = weird_values(rng) + [
        -1,
        -0.5,
        0,
        10**9,
        1e-12,
        "rk4",
        "dopri5",
        "wfr",
        "stochastic",
        "hessian",
        "isotropic",
        "file",
        "region",
        "saddle",
        "inf",
    ]
    value = values[rng.integers(len(values))]
    if isinstance(value, float) and math.isnan(value):
        value = "nan"
    if value is None:  # TOML has no null: the key is left out
        table.pop(key, None)
        return doc, False, f"[{table_name}] {key} removed"
    table[key] = value
    bad = True if (key in NUMERIC and isinstance(value, str)) else None
    return doc, bad, f"[{table_name}] {key} = {value!r}"[:200]


# --------------------------------------------------------------------- fixtures
@pytest.fixture
def workdir(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "mu.npz", **_measure_arrays(rng))
    (tmp_path / "train.toml").write_text(toml_dumps(TRAIN_BASE), encoding="utf-8")
    return tmp_path


def test_base_train_problem_runs(workdir, capsys):
    outcome = run_cli(["train", "--problem", str(workdir / "train.toml"), "--out", str(workdir / "run")], capsys)
    assert outcome.status == 0, outcome
    assert (workdir / "run" / "final.npz").exists()


# ----------------------------------------------------------------- the families
def make_train_case(workdir: Path, rng: np.random.Generator, i: int):
    target = workdir / f"train_{i}.toml"
    out = workdir / f"run_{i}"
    mode = int(rng.integers(0, 10))
    if mode == 0:
        target.write_text(mutate_text(toml_dumps(TRAIN_BASE), rng), encoding="utf-8", errors="replace")
        bad, label = None, "text mutation"
    else:
        doc, bad, label = TRAIN_BASE, False, ""
        for _ in range(int(rng.integers(1, 3))):
            doc, why, what = mutate_train_doc(doc, rng)
            label += what + "; "
            if why:
                bad = True
                break
            bad = None if why is None else bad
        target.write_text(toml_dumps(make_cheap(doc)), encoding="utf-8")
    return ["train", "--problem", str(target), "--out", str(out)], bad, f"train {label}", [out], (0, 1)


def make_init_measure_case(workdir: Path, rng: np.random.Generator, i: int):
    folder = workdir / f"init_{i}"
    folder.mkdir()
    raw, bad, what = corrupt_arrays(_measure_arrays(rng, int(rng.integers(2, 5))), rng, "measure")
    (folder / "m.npz").write_bytes(raw)
    doc = copy.deepcopy(TRAIN_BASE)
    doc["init"] = {"kind": "file", "measure": "m.npz"}
    (folder / "p.toml").write_text(toml_dumps(doc), encoding="utf-8")
    out = folder / "run"
    return ["train", "--problem", str(folder / "p.toml"), "--out", str(out)], bad, f"init measure {what}", [out], (0, 1)


ANALYSIS_VALUES = {"grad_tol": 1e-6, "lambda_tol": 1e-6, "eigensolver": "lanczos", "max_iter": 50}


def make_analyze_case(workdir: Path, rng: np.random.Generator, i: int):
    folder = workdir / f"analyze_{i}"
    folder.mkdir()
    doc = {k: v for k, v in TRAIN_BASE.items() if k == "teacher"}
    from landscape.second_order.settings import ANALYSIS_KEYS

    table: dict = {}
    bad: bool | None = False
    label = ""
    measure = workdir / "mu.npz"
    mode = int(rng.integers(0, 4))
    if mode == 0:
        raw, bad, what = corrupt_arrays(_measure_arrays(rng), rng, "measure")
        measure = folder / "m.npz"
        measure.write_bytes(raw)
        label = f"measure {what}"
    else:
        keys = list(ANALYSIS_KEYS) + ["bogus"]
        for _ in range(int(rng.integers(1, 3))):
            key = keys[rng.integers(len(keys))]
            values = weird_values(rng)
            value = values[rng.integers(len(values))]
            if isinstance(value, float) and math.isnan(value):
                value = "nan"
            if value is None:
                continue
            table[key] = value
            label += f"{key} = {value!r}; "
            if key == "bogus" or value in ("nan", "", "inf") or isinstance(value, (list, dict)):
                bad = True
            elif bad is False:
                bad = None
    if table or rng.random() < 0.5:
        doc["analysis"] = table
    (folder / "p.toml").write_text(toml_dumps(doc), encoding="utf-8")
    out = folder / "out"
    argv = ["analyze", "--problem", str(folder / "p.toml"), "--measure", str(measure), "--out", str(out), "--json"]
    return argv, bad, f"analyze {label}"[:300], [out], (0,)


def _toy_results(workdir: Path) -> dict:
    return {
        "id": "toy",
        "statement": "2^10 = 1024",
        "verdict": "pass",
        "metrics": {"power": {"value": 1024.0, "uncertainty": 0.0, "description": "2^10"}},
        "threshold": "pass: power = 1024",
        "evidence": ["toy/evidence.txt"],
    }


def _mutate_json(obj, rng: np.random.Generator, depth: int = 0):
    """One random structural change somewhere in a JSON value."""
    if isinstance(obj, dict) and obj and depth < 4 and rng.random() < 0.7:
        key = list(obj)[rng.integers(len(obj))]
        choice = rng.integers(0, 4)
        obj = dict(obj)
        if choice == 0:
            del obj[key]
        elif choice == 1:
            values = weird_values(rng)
            obj[key] = values[rng.integers(len(values))]
        else:
            obj[key] = _mutate_json(obj[key], rng, depth + 1)
        return obj
    if isinstance(obj, list) and obj and depth < 4 and rng.random() < 0.7:
        obj = list(obj)
        j = int(rng.integers(len(obj)))
        obj[j] = _mutate_json(obj[j], rng, depth + 1)
        return obj
    values = weird_values(rng) + [{"verdict": "pass"}, [{}], "pass", "fail", "inconclusive"]
    return values[rng.integers(len(values))]


def _json_text(obj) -> str:
    return json.dumps(obj)  # NaN and infinities written as the non-standard constants on purpose


def make_baseline_case(workdir: Path, rng: np.random.Generator, i: int):
    folder = workdir / f"verify_{i}"
    folder.mkdir()
    base = [_toy_results(workdir)] if rng.random() < 0.5 else {"results": [_toy_results(workdir)], "profile": "quick"}
    mode = int(rng.integers(0, 5))
    if mode == 0:
        data = bytes(rng.integers(0, 256, size=int(rng.integers(0, 200)), dtype=np.uint8))
        bad = None
    elif mode == 1:
        data = mutate_text(json.dumps(base, indent=1), rng).encode("utf-8", "replace")
        bad = None
    else:
        data = _json_text(_mutate_json(base, rng)).encode()
        bad = None
    (folder / "b.json").write_bytes(data)
    out = folder / "out"
    argv = ["verify", "--claims", "toy", "--out", str(out), "--no-report", "--baseline", str(folder / "b.json")]
    return argv, bad, f"baseline {data[:150]!r}", [out, folder / "b.json"], (0, 1)


def _run_dir_files(workdir: Path) -> dict[str, bytes]:
    """A tiny completed run directory (made once per fixture) to mutate."""
    run = workdir / "ref_run"
    if not run.exists():
        doc = copy.deepcopy(TRAIN_BASE)
        doc["dynamics"]["steps"] = 6
        (workdir / "ref.toml").write_text(toml_dumps(doc), encoding="utf-8")
        assert main(["train", "--problem", str(workdir / "ref.toml"), "--out", str(run)]) == 0
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def _analysis_json(workdir: Path) -> str:
    """``analysis.json`` of a small measure (analysed once per fixture)."""
    out = workdir / "ref_analysis"
    if not out.exists():
        (workdir / "an.toml").write_text(toml_dumps({"teacher": TRAIN_BASE["teacher"]}), encoding="utf-8")
        argv = ["analyze", "--problem", str(workdir / "an.toml"), "--measure", str(workdir / "mu.npz"), "--out", str(out)]
        assert main(argv) == 0
    return (out / "analysis.json").read_text(encoding="utf-8")


def make_report_case(workdir: Path, rng: np.random.Generator, i: int):
    folder = workdir / f"report_{i}"
    folder.mkdir()
    kind = ["results", "trajectory", "analysis"][rng.integers(3)]
    if kind == "results":
        name, text = "results.json", json.dumps({"profile": "quick", "results": [_toy_results(workdir)]}, indent=1)
    elif kind == "trajectory":
        name, text = "trajectory.csv", _run_dir_files(workdir)["trajectory.csv"].decode()
    else:
        name, text = "analysis.json", _analysis_json(workdir)
    mode = int(rng.integers(0, 3))
    if mode == 0:
        data = mutate_text(text, rng).encode("utf-8", "replace")
    elif mode == 1 and name.endswith(".json"):
        data = _json_text(_mutate_json(json.loads(text), rng)).encode()
    else:
        data = bytes(rng.integers(0, 256, size=int(rng.integers(0, 300)), dtype=np.uint8))
    (folder / name).write_bytes(data)
    out = folder / "out"
    return ["report", str(folder), "--out", str(out)], None, f"report {name} {data[:150]!r}", [out], (0,)


CHECKPOINT_NAMES = ("y", "step", "time", "step_size", "energy_offset", "last_kick", "rng_state", "last_row")


def _checkpoint_arrays(raw: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(raw)) as npz:
        return {name: npz[name] for name in npz.files}


def _changed(raw: bytes, new: bytes) -> bool | None:
    """True when ``new`` does not hold the same arrays as ``raw`` (so the checksum must refuse
    it); None when it does (a change in zip padding: resuming is fine)."""
    try:
        arrays = _checkpoint_arrays(new)
    except Exception:  # noqa: BLE001 - unreadable: surely refused
        return True
    old = _checkpoint_arrays(raw)
    same = arrays.keys() == old.keys() and all(  # the same values (load_npz reads every dtype as float64)
        arrays[k].dtype.kind in "biuf" and np.array_equal(arrays[k].astype(np.float64), old[k].astype(np.float64)) for k in old
    )
    return None if same else True


def make_checkpoint_case(workdir: Path, rng: np.random.Generator, i: int):
    files = _run_dir_files(workdir)
    run = workdir / f"resume_{i}"
    run.mkdir()
    for name, data in files.items():
        (run / name).write_bytes(data)
    raw = files["checkpoint.npz"]
    mode = int(rng.integers(0, 4))
    if mode < 2:  # the corruptions of the evaluate fuzzer, on the checkpoint's own arrays
        arrays = _checkpoint_arrays(raw)
        try:
            raw2, bad, what = corrupt_arrays(arrays, rng, "checkpoint")
        except (IndexError, ValueError):  # a row-wise change of a 0-d array, NaN into uint8: truncate instead
            raw2, bad, what = raw[: int(rng.integers(len(raw)))], True, "truncation"
        bad = _changed(raw, raw2)
    elif mode == 2:  # flip bits inside the state (past the zip headers): the checksum must catch it
        data = bytearray(raw)
        for _ in range(int(rng.integers(1, 4))):
            j = int(rng.integers(len(data)))
            data[j] ^= 1 << int(rng.integers(8))
        raw2, what = bytes(data), "bit flips"
        bad = _changed(raw, raw2)
    else:  # a consistent checksum over nonsense: refused by the other checks, or a valid run
        arrays = _checkpoint_arrays(raw)
        name = CHECKPOINT_NAMES[rng.integers(len(CHECKPOINT_NAMES))]
        values = [
            np.array(-3.0),
            np.array(1e300),
            np.zeros(0),
            np.ones((2, 2)),
            np.frombuffer(b"{]", np.uint8),
            np.frombuffer(b'{"bit_generator": "MT19937"}', np.uint8),
            np.frombuffer(b'{"bit_generator": "PCG64"}', np.uint8),
            np.frombuffer(b'{"bit_generator": "PCG64", "state": 5}', np.uint8),
            np.array([1.0, 2.0, 3.0]),
            arrays[name][:-1] if arrays[name].ndim else arrays[name],
            np.full(3, 255, np.uint8),
        ]
        arrays[name] = values[rng.integers(len(values))]
        body = {k: v for k, v in arrays.items() if k != "sha256"}
        with np.errstate(all="ignore"):
            digest = np.frombuffer(
                _digest(
                    {
                        k: np.asarray(v, dtype=np.float64) if k not in ("step", "rng_state", "last_row") else np.asarray(v)
                        for k, v in body.items()
                    }
                ).encode(),
                np.uint8,
            )
        raw2, bad, what = _npz_bytes(**body, sha256=digest), None, f"consistent checksum, {name} replaced"
    (run / "checkpoint.npz").write_bytes(raw2)
    problem = workdir / "ref.toml"
    return ["train", "--problem", str(problem), "--out", str(run), "--resume"], bad, f"checkpoint {what}", [run], (0, 1)


FAMILIES: dict[str, tuple[Callable, int, int]] = {
    # name: (generator, seed, quick cases)
    "train": (make_train_case, 11, QUICK_CASES),
    "init_measure": (make_init_measure_case, 12, QUICK_CASES),
    "analyze": (make_analyze_case, 13, 10),
    "baseline": (make_baseline_case, 14, QUICK_CASES),
    "report": (make_report_case, 15, 10),
    "checkpoint": (make_checkpoint_case, 16, QUICK_CASES),
}


@pytest.fixture
def toy_registry(monkeypatch):
    monkeypatch.setitem(registry.ALL_CHECKS, "toy", "toy_claim")


def _fuzz(workdir: Path, capsys, family: str, count: int, seed: int) -> Tally:
    make = FAMILIES[family][0]
    rng = np.random.default_rng(seed)
    tally = Tally()
    for i in range(count):
        argv, bad, label, outputs, ok = make(workdir, rng, i)
        before = snapshot(*outputs)
        outcome = run_cli(argv, capsys)
        check_contract(outcome, bad, label, before, snapshot(*outputs) if outcome.status == 2 else before, ok)
        tally.add(outcome)
    return tally


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzz_inputs_quick(workdir, capsys, toy_registry, family):
    _, seed, count = FAMILIES[family]
    tally = _fuzz(workdir, capsys, family, count, seed)
    with capsys.disabled():
        print(f" [{family}: {tally.tried} cases, exit statuses {dict(sorted(tally.status.items()))}]", end="")
    assert tally.tried == count
    assert tally.status.get(2, 0) > 0, tally.status


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzz_inputs_slow(workdir, capsys, toy_registry, family):
    _, seed, count = FAMILIES[family]
    count = SLOW_CASES if count == QUICK_CASES else 10 * count
    tally = _fuzz(workdir, capsys, family, count, 1000 + seed)
    with capsys.disabled():
        print(f" [{family}: {tally.tried} cases, exit statuses {dict(sorted(tally.status.items()))}]", end="")
    assert tally.tried == count
    assert tally.status.get(2, 0) > 0, tally.status


# ----------------------------------------------------------------- the checksum
def test_corrupted_checkpoint_is_refused_naming_the_file(workdir, capsys):
    """One flipped bit in y (the zip CRC rewritten to match): the sha256 catches it, exit 2."""
    files = _run_dir_files(workdir)
    run = workdir / "flipped"
    shutil.copytree(workdir / "ref_run", run)
    arrays = _checkpoint_arrays(files["checkpoint.npz"])
    y = arrays["y"].copy()
    y.view(np.uint64)[0] ^= np.uint64(1)  # the last bit of the mantissa: finite, plausible
    arrays["y"] = y
    (run / "checkpoint.npz").write_bytes(_npz_bytes(**arrays))
    before = snapshot(run)
    outcome = run_cli(["train", "--problem", str(workdir / "ref.toml"), "--out", str(run), "--resume"], capsys)
    check_contract(outcome, True, "flipped bit", before, snapshot(run))
    assert "checkpoint.npz" in outcome.err and "checksum" in outcome.err


def test_checkpoint_digest_is_sha256_of_its_arrays(workdir):
    arrays = _checkpoint_arrays(_run_dir_files(workdir)["checkpoint.npz"])
    stored = bytes(arrays.pop("sha256")).decode()
    assert len(stored) == 64 and stored == _digest(arrays)
    assert stored != hashlib.sha256(b"").hexdigest()


def test_zip_member_crc_is_also_checked(workdir, capsys):
    """A byte changed in the raw archive (CRC not rewritten): refused as an invalid archive."""
    files = _run_dir_files(workdir)
    run = workdir / "crc"
    shutil.copytree(workdir / "ref_run", run)
    raw = bytearray(files["checkpoint.npz"])
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as archive:
        info = archive.getinfo("y.npy")
    raw[info.header_offset + 30 + len(info.filename) + 130] ^= 0x40
    (run / "checkpoint.npz").write_bytes(bytes(raw))
    before = snapshot(run)
    outcome = run_cli(["train", "--problem", str(workdir / "ref.toml"), "--out", str(run), "--resume"], capsys)
    check_contract(outcome, True, "raw byte", before, snapshot(run))


# ------------------------------------------------------------- a real interpreter
#: runs several ``main`` calls in one fresh interpreter, stderr unredirected (warnings
#: included), a marker line between cases; prints the exit statuses as JSON.
_DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[2])
from verification import registry
registry.ALL_CHECKS["toy"] = "toy_claim"
from landscape.cli import main
statuses = []
for argv in json.loads(sys.argv[1]):
    statuses.append(main(argv))
    sys.stdout.flush()
    print("@@case-end@@", file=sys.stderr, flush=True)
print("@@statuses@@" + json.dumps(statuses))
"""


def test_bad_inputs_in_a_real_interpreter(workdir):
    """One surely-bad case per family in a fresh interpreter: the real stderr has one line each."""
    import os
    import subprocess
    import sys

    files = _run_dir_files(workdir)
    cases = []
    doc = copy.deepcopy(TRAIN_BASE)
    doc["dynamics"]["step_size"] = -1.0
    (workdir / "neg.toml").write_text(toml_dumps(doc), encoding="utf-8")
    cases.append(["train", "--problem", str(workdir / "neg.toml"), "--out", str(workdir / "r1")])
    doc = copy.deepcopy(TRAIN_BASE)
    doc["init"] = {"kind": "file", "measure": "huge.npz"}
    (workdir / "huge.npz").write_bytes(_npz_bytes(a=np.full((2, 2), 1e300), w=np.full((2, 3), np.inf)))
    (workdir / "huge.toml").write_text(toml_dumps(doc), encoding="utf-8")
    cases.append(["train", "--problem", str(workdir / "huge.toml"), "--out", str(workdir / "r2")])
    (workdir / "an.toml").write_text(toml_dumps({"teacher": TRAIN_BASE["teacher"], "analysis": {"grad_tol": -1}}), encoding="utf-8")
    cases.append(["analyze", "--problem", str(workdir / "an.toml"), "--measure", str(workdir / "mu.npz")])
    (workdir / "b.json").write_text('[{"id": "toy", "verdict": "pass", "metrics": {"x": 3}, "threshold": ""}]')
    cases.append(["verify", "--claims", "toy", "--out", str(workdir / "v"), "--no-report", "--baseline", str(workdir / "b.json")])
    (workdir / "rep").mkdir()
    (workdir / "rep" / "trajectory.csv").write_bytes(files["trajectory.csv"][:-40] + b"\xff\xfe,nan,,\n")
    cases.append(["report", str(workdir / "rep"), "--out", str(workdir / "rep_out")])
    shutil.copytree(workdir / "ref_run", workdir / "bad_ckpt")
    arrays = dict(np.load(io.BytesIO(files["checkpoint.npz"])))
    arrays["y"][0] = np.nextafter(arrays["y"][0], np.inf)  # one ulp, under the old checksum
    np.savez(workdir / "bad_ckpt" / "checkpoint.npz", **arrays)
    cases.append(["train", "--problem", str(workdir / "ref.toml"), "--out", str(workdir / "bad_ckpt"), "--resume"])
    before = snapshot(workdir)
    env = {k: v for k, v in os.environ.items() if k != "LANDSCAPE_DEBUG"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    tests = str(Path(__file__).resolve().parents[1])  # tests/, where toy_claim.py lives
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(cases), tests], capture_output=True, text=True, timeout=300, env=env)
    assert "@@statuses@@" in proc.stdout, proc.stderr[-2000:]
    statuses = json.loads(proc.stdout.split("@@statuses@@")[1])
    errs = proc.stderr.split("@@case-end@@\n")[:-1]
    assert len(statuses) == len(errs) == len(cases)
    assert proc.stdout.split("@@statuses@@")[0] == ""
    for status, err, argv in zip(statuses, errs, cases, strict=True):
        check_contract(Outcome(status, "", err), True, " ".join(argv[:1]), {}, {})
    assert snapshot(workdir) == before
