"""Output folders whole or absent (issue 15, items 7–9).

* Concurrency: a second process on the same ``--out`` is refused (exit 2, one line) while the
  first holds :func:`landscape.io.files.output_lock`; two ``train`` processes started together on
  one folder: one completes, the other is refused and the run is the first one's, whole.
* Resume: a changed ``[teacher] file``, a checkpoint of another configuration, a deleted or a
  truncated ``trajectory.csv`` are refused (exit 2) naming the file; nothing is changed.
* Kill −9 at random moments of ``verify``, ``report`` and ``analyze --out`` rewriting a folder
  that holds a previous version: afterwards the folder is byte for byte the previous version
  or a complete new one (every file of the new version, no file of the old), never a mix.
* Disk full (``RLIMIT_FSIZE``) during ``analyze --out`` and ``report``: exit 2, the previous
  folder byte for byte as it was, and nothing new beside it.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ERF_TEACHER_TOML

from landscape.cli import main
from landscape.io.files import output_lock

ROOT = Path(__file__).resolve().parents[2]
#: kill trials per command (each a subprocess killed at a random moment of its write phase).
KILLS = 4
SEED = 15


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _spawn(argv: list[str], preexec=None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "landscape.cli", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec)


def _kill_in_write_phase(argvs: list[list[str]], outs: list[Path], window: float, rng: random.Random, start: str = "staging") -> None:
    """Spawn each ``landscape argv`` at once and SIGKILL the i-th at a random moment of the i-th
    ``KILLS``-th of ``window`` seconds after its ``.<out>.<start>`` file appeared (its staging
    folder, or for ``verify`` its lock; stratified, so the kills cover the write phase from its
    start to past its end)."""
    children = [_spawn(argv) for argv in argvs]
    stagings = [out.parent / f".{out.name}.{start}" for out in outs]
    delays = [(i + rng.random()) * window / len(argvs) for i in range(len(argvs))]
    due: list[float | None] = [None] * len(argvs)
    deadline = time.monotonic() + 120
    while any(child.returncode is None for child in children) and time.monotonic() < deadline:
        now = time.monotonic()
        for i, child in enumerate(children):
            if child.poll() is not None:
                continue
            if due[i] is None and stagings[i].exists():
                due[i] = now + delays[i]
            if due[i] is not None and now >= due[i]:
                child.kill()
                child.wait()
        time.sleep(0.001)
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()


def _whole(out: Path, previous: dict[str, bytes], is_new) -> str:
    """``previous`` when ``out`` is byte for byte the previous version, ``new`` when ``is_new(files)`` holds."""
    files = _files(out)
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.") and p.name.endswith("previous")]
    assert not leftovers or out.is_dir(), "the folder is missing while its previous version is set aside"
    if files == previous:
        return "previous"
    assert is_new(files), f"a mixed folder: {sorted(files)}"
    return "new"


# --------------------------------------------------------------------------- 7: lock
@pytest.fixture
def problem(tmp_path) -> Path:
    """A short run whose teacher is read from a file (``[teacher] file``)."""
    np.savez(tmp_path / "teacher.npz", c=np.eye(2), u=np.array([[1.5, 0.0, 0.0], [0.0, 1.5, 0.0]]))
    path = tmp_path / "p.toml"
    path.write_text('[teacher]\nactivation = "erf"\nfile = "teacher.npz"\n'
                    "[init]\nparticles = 3\nseed = 1\n[dynamics]\nsteps = 12\nstep_size = 0.05\ncheckpoint_every = 4\n")
    return path


def test_a_locked_folder_is_refused_by_every_command(problem, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--problem", str(problem), "--out", str(out), "--quiet"]) == 0
    mu = tmp_path / "mu.npz"
    rng = np.random.default_rng(0)
    np.savez(mu, a=rng.standard_normal((3, 2)), w=0.7 * rng.standard_normal((3, 3)))
    commands = [
        ["train", "--problem", str(problem), "--out", str(out), "--quiet", "--resume"],
        ["analyze", "--problem", str(problem), "--measure", str(mu), "--out", str(out)],
        ["report", str(out), "--out", str(out)],
        ["verify", "--profile", "quick", "--claims", "ill-conditioning", "--no-baseline", "--out", str(tmp_path / "v")],
    ]
    capsys.readouterr()
    for argv in commands:
        target = Path(argv[argv.index("--out") + 1])
        before = _files(target) if target.exists() else None
        with output_lock(target):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "is in use by another landscape process" in err, err
        assert (_files(target) if target.exists() else None) == before
    assert main(commands[0]) == 0  # the lock is released


@pytest.mark.slow
def test_two_trains_on_one_folder(tmp_path):
    """Started together: one completes, the other is refused with one line; the run is whole."""
    path = tmp_path / "p.toml"
    path.write_text(ERF_TEACHER_TOML + "[init]\nparticles = 4\n[dynamics]\nsteps = 150\nstep_size = 0.02\n")
    out = tmp_path / "run"
    children = [_spawn(["train", "--problem", str(path), "--out", str(out), "--quiet"]) for _ in range(2)]
    codes = sorted(child.wait(timeout=300) for child in children)
    errors = [child.stderr.read() for child in children]
    assert codes == [0, 2], errors
    refusal = next(e for e, child in zip(errors, children, strict=True) if child.returncode == 2)
    assert refusal.count("\n") == 1 and ("in use by another landscape process" in refusal or "already holds a run" in refusal)
    rows = (out / "trajectory.csv").read_text().splitlines()
    assert len(rows) == 1 + len({r.split(",")[0] for r in rows[1:]})  # no row written twice
    assert json.loads((out / "status.json").read_text())["status"] == "completed"


# --------------------------------------------------------------------------- 8: resume
def _resume_refused(capsys, problem: Path, run: Path, names: str) -> None:
    before = _files(run)
    capsys.readouterr()
    assert main(["train", "--problem", str(problem), "--out", str(run), "--quiet", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot resume") and names in err, err
    assert _files(run) == before


def test_resume_refuses_changed_inputs_foreign_checkpoints_and_lost_rows(problem, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--problem", str(problem), "--out", str(run), "--quiet"]) == 0
    assert '# sha256 teacher.file = "' in (run / "config.toml").read_text()
    pristine = _files(run)
    teacher = tmp_path / "teacher.npz"
    original = teacher.read_bytes()
    np.savez(teacher, c=np.eye(2), u=np.array([[1.5, 0.0, 0.0], [0.0, 1.4, 0.0]]))  # same shapes, another teacher
    _resume_refused(capsys, problem, run, str(teacher))
    teacher.write_bytes(original)

    other = tmp_path / "other.toml"  # another seed: a checkpoint of the same shapes, of another configuration
    other.write_text(problem.read_text().replace("seed = 1", "seed = 2"))
    assert main(["train", "--problem", str(other), "--out", str(tmp_path / "other"), "--quiet"]) == 0
    shutil.copyfile(tmp_path / "other" / "checkpoint.npz", run / "checkpoint.npz")
    _resume_refused(capsys, problem, run, str(run / "checkpoint.npz"))
    (run / "checkpoint.npz").write_bytes(pristine["checkpoint.npz"])

    rows = (run / "trajectory.csv").read_text().splitlines(keepends=True)
    (run / "trajectory.csv").write_text("".join(rows[:-3]))  # truncated
    _resume_refused(capsys, problem, run, str(run / "trajectory.csv"))
    (run / "trajectory.csv").unlink()  # deleted
    _resume_refused(capsys, problem, run, str(run / "trajectory.csv"))
    (run / "trajectory.csv").write_bytes(pristine["trajectory.csv"])

    assert main(["train", "--problem", str(problem), "--out", str(run), "--quiet", "--resume"]) == 0  # untouched: resumes
    assert _files(run)["final.npz"] == pristine["final.npz"]


# ----------------------------------------------------------------- 9: kills, disk full
@pytest.fixture
def analysis_inputs(tmp_path) -> Path:
    (tmp_path / "a.toml").write_text(ERF_TEACHER_TOML)
    rng = np.random.default_rng(0)
    for name in ("old", "new"):
        np.savez(tmp_path / f"{name}.npz", a=rng.standard_normal((3, 2)), w=0.7 * rng.standard_normal((3, 3)))
    return tmp_path


def _analyze_argv(inputs: Path, measure: str, out: Path) -> list[str]:
    return ["analyze", "--problem", str(inputs / "a.toml"), "--measure", str(inputs / f"{measure}.npz"), "--out", str(out)]


@pytest.mark.slow
def test_kill_during_analyze_leaves_the_previous_or_the_new_output(analysis_inputs, capsys):
    rng = random.Random(SEED)
    reference = analysis_inputs / "reference"
    started = time.monotonic()
    assert main(_analyze_argv(analysis_inputs, "new", reference)) == 0
    window = 2 * (time.monotonic() - started)
    new = _files(reference)
    outs = [analysis_inputs / f"kill{trial}" / "out" for trial in range(KILLS)]
    for out in outs:
        assert main(_analyze_argv(analysis_inputs, "old", out)) == 0
    previous = _files(outs[0])
    _kill_in_write_phase([_analyze_argv(analysis_inputs, "new", out) for out in outs], outs, window, rng)
    outcomes = [_whole(out, previous, lambda files: files == new) for out in outs]
    capsys.readouterr()
    print(f"analyze kills: {outcomes}")


@pytest.fixture
def runs(tmp_path) -> Path:
    """Two finished train runs (the reports' inputs)."""
    for name, seed in (("run-old", 1), ("run-new", 2)):
        (tmp_path / f"{name}.toml").write_text(ERF_TEACHER_TOML + f"[init]\nparticles = 2\nseed = {seed}\n[dynamics]\nsteps = 20\n")
        assert main(["train", "--problem", str(tmp_path / f"{name}.toml"), "--out", str(tmp_path / name), "--quiet"]) == 0
    return tmp_path


def _new_report(source: Path, names: set[str]):
    def is_new(files: dict[str, bytes]) -> bool:
        referenced = set(re.findall(r"\]\((figures/[^)]+)\)", files["summary.md"].decode()))
        return (set(files) == names and str(source) in files["index.html"].decode()
                and str(source) in files["summary.md"].decode() and referenced and referenced <= set(files))
    return is_new


@pytest.mark.slow
def test_kill_during_report_leaves_the_previous_or_the_new_report(runs, capsys):
    rng = random.Random(SEED)
    started = time.monotonic()
    assert main(["report", str(runs / "run-new"), "--out", str(runs / "reference")]) == 0
    window = 3 * (time.monotonic() - started)  # KILLS processes share the cores
    names = set(_files(runs / "reference"))
    outs = [runs / f"kill{trial}" / "out" for trial in range(KILLS)]
    previous = {}
    for out in outs:
        assert main(["report", str(runs / "run-old"), "--out", str(out)]) == 0
        previous[out] = _files(out)
    _kill_in_write_phase([["report", str(runs / "run-new"), "--out", str(out)] for out in outs], outs, window, rng)
    outcomes = [_whole(out, previous[out], _new_report((runs / "run-new").resolve(), names)) for out in outs]
    capsys.readouterr()
    print(f"report kills: {outcomes}")


@pytest.mark.slow
def test_kill_during_verify_leaves_the_previous_the_new_or_no_record(tmp_path, capsys):
    rng = random.Random(SEED)
    argv = ["verify", "--profile", "quick", "--claims", "ill-conditioning", "--no-baseline"]
    first = tmp_path / "first"
    started = time.monotonic()
    assert main([*argv, "--out", str(first)]) == 0
    window = 5 * (time.monotonic() - started)  # KILLS processes share the cores, each imports torch
    previous = _files(first)

    def is_new(files: dict[str, bytes]) -> bool:
        results = json.loads(files["results.json"])
        evidence = {e for r in results["results"] for e in r["evidence"]}
        date = results["provenance"]["date"]
        # results.json is written before the report: killed between, the new record stands without
        # a report (`landscape report` rebuilds it), never beside the previous one
        return (files["results.json"] != previous["results.json"] and evidence <= set(files)
                and all(date in files[name].decode() for name in ("index.html", "summary.md") if name in files))

    def unrecorded(out: Path) -> bool:  # killed before completing: no record claims anything
        return not any((out / name).exists() for name in ("results.json", "index.html", "summary.md"))

    outs = [tmp_path / f"kill{trial}" / "out" for trial in range(KILLS)]
    for out in outs:
        shutil.copytree(first, out)
    time.sleep(1.0)  # a new version has another date (second resolution)
    _kill_in_write_phase([[*argv, "--out", str(out)] for out in outs], outs, window, rng, start="lock")
    outcomes = ["no record" if unrecorded(out) else _whole(out, previous, is_new) for out in outs]
    for out in outs:
        if unrecorded(out):
            assert main(["report", str(out), "--out", str(out.parent / "report")]) == 2  # nothing to report from
    capsys.readouterr()
    print(f"verify kills: {outcomes}")


def _fsize_limit(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def _disk_full(argv: list[str], out: Path, limit: int) -> None:
    """Run ``argv`` with files capped at ``limit`` bytes: exit 2, ``out`` as it was, nothing new beside it."""
    before = _files(out) if out.exists() else None
    beside = sorted(p.name for p in out.parent.iterdir())
    child = _spawn(argv, preexec=_fsize_limit(limit))
    assert child.wait(timeout=300) == 2, child.stderr.read()
    assert child.stderr.read().startswith("error: ")
    assert (_files(out) if out.exists() else None) == before
    assert sorted(p.name for p in out.parent.iterdir()) == beside


@pytest.mark.slow
def test_disk_full_during_analyze_and_report(analysis_inputs, runs, capsys):
    out = analysis_inputs / "analysis"
    assert main(_analyze_argv(analysis_inputs, "old", out)) == 0
    _disk_full(_analyze_argv(analysis_inputs, "new", out), out, 600)
    report = runs / "report"
    assert main(["report", str(runs / "run-old"), "--out", str(report)]) == 0
    _disk_full(["report", str(runs / "run-new"), "--out", str(report)], report, 4000)
    _disk_full(_analyze_argv(analysis_inputs, "new", runs / "fresh"), runs / "fresh", 600)  # a new folder: nothing made
    _disk_full(["report", str(runs / "run-new"), "--out", str(runs / "run-new")], runs / "run-new", 4000)
    capsys.readouterr()
