"""Crash safety of ``landscape train`` (issue 8).

* SIGKILL at seeded random moments (≥ 20 trials, a fresh run directory each), then
  ``--resume``: always the bitwise-identical ``final.npz`` and ``trajectory.csv`` of one
  uninterrupted reference run (a kill before the first checkpoint, or before anything was
  written, starts the run afresh).
* NaN or overflow in the field: the run stops as data (exit 1, ``status.json`` says
  ``nonfinite``), ``checkpoint.npz`` holds the last good committed state (checksum intact)
  and resuming it once the fault is gone reaches the uninterrupted run's ``final.npz``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import ERF_TEACHER_TOML, KICKED_RUN_TOML

from landscape.cli import main
from landscape.dynamics.flow import ParticleFlow
from landscape.dynamics.rundir import RunDirectory

ROOT = Path(__file__).resolve().parents[2]
KILL_TRIALS = 20
#: subprocesses alive at once (the kills land at random moments either way).
BATCH = 4


def _problem(folder: Path, steps: int, every: int) -> Path:
    path = folder / "p.toml"
    path.write_text(ERF_TEACHER_TOML + KICKED_RUN_TOML.format(steps=steps, checkpoint_every=every, snapshot_every=40), encoding="utf-8")
    return path


def _spawn(problem: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "landscape.cli", "train", "--problem", str(problem), "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_trial(problem: Path, out: Path, delay: float, from_spawn: bool, timeout: float = 300) -> str:
    """Spawn a run, SIGKILL it ``delay`` s after spawning (``from_spawn``) or after its config.toml
    appeared, and say what the kill interrupted."""
    child = _spawn(problem, out)
    t0 = time.monotonic()
    if not from_spawn:
        while child.poll() is None and not (out / "config.toml").exists() and time.monotonic() - t0 < timeout:
            time.sleep(0.005)
        t0 = time.monotonic()
    while child.poll() is None and time.monotonic() - t0 < delay:
        time.sleep(0.005)
    if child.poll() is not None:
        child.wait()
        return "after the end"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=timeout)
    if (out / "final.npz").exists():
        return "after the end"
    if (out / "checkpoint.npz").exists():
        return "mid-run"
    return "before the first checkpoint" if (out / "config.toml").exists() else "before any write"


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bitwise_identical(tmp_path, capsys):
    problem = _problem(tmp_path, steps=150, every=7)
    reference = tmp_path / "reference"
    assert main(["train", "--problem", str(problem), "--out", str(reference)]) == 0
    work = time.monotonic()
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "timing")]) == 0
    work = time.monotonic() - work  # the run itself, without the interpreter's start
    rng = np.random.default_rng(2024)
    from_spawn = rng.random(KILL_TRIALS) < 0.15  # a few kills while the interpreter starts
    delays = np.where(from_spawn, rng.uniform(0.0, 3.0, KILL_TRIALS), rng.uniform(0.0, 1.3, KILL_TRIALS) * work)
    where: dict[str, int] = {}
    for batch in range(0, KILL_TRIALS, BATCH):
        trials = list(range(batch, min(batch + BATCH, KILL_TRIALS)))
        with ThreadPoolExecutor(len(trials)) as pool:
            kinds = list(pool.map(lambda i: _kill_trial(problem, tmp_path / f"trial_{i}", delays[i], from_spawn[i]), trials))
        for i, kind in zip(trials, kinds, strict=True):
            where[kind] = where.get(kind, 0) + 1
            run = tmp_path / f"trial_{i}"
            resume = ["--resume"] if (run / "config.toml").exists() else []  # nothing written: start it again
            status = main(["train", "--problem", str(problem), "--out", str(run), *resume])
            err = capsys.readouterr().err
            assert status == 0, f"trial {i} (kill {kind}, {delays[i]:.2f} s): {err}"
            assert (run / "final.npz").read_bytes() == (reference / "final.npz").read_bytes(), f"trial {i}: {kind}"
            assert (run / "trajectory.csv").read_bytes() == (reference / "trajectory.csv").read_bytes(), f"trial {i}"
    with capsys.disabled():
        print(f"\n{KILL_TRIALS} kill trials survived: {where}")
    assert sum(where.values()) == KILL_TRIALS
    assert where.get("mid-run", 0) >= KILL_TRIALS // 2, where


# ------------------------------------------------------------- non-finite fields
@pytest.mark.parametrize("fault", ["nan", "overflow"])
def test_nonfinite_field_stops_with_the_last_good_checkpoint(tmp_path, capsys, monkeypatch, fault):
    problem = _problem(tmp_path, steps=30, every=4)
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "reference")]) == 0
    real_field = ParticleFlow._field
    calls = {"n": 0}

    def faulty_field(self, y):
        out = real_field(self, y)
        calls["n"] += 1
        if calls["n"] > 4 * 13 + 1:  # rk4: four evaluations a step (and one to start): step 14 breaks
            dy = out[0] * (float("nan") if fault == "nan" else 1e308) * 1e308
            out = (dy, *out[1:])
        return out

    monkeypatch.setattr(ParticleFlow, "_field", faulty_field)
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "--problem", str(problem), "--out", str(run), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("stopped at step")
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "nonfinite" and "finite" in status["message"]
    assert not (run / "final.npz").exists()
    ckpt = RunDirectory(run).load_checkpoint()  # the checksum holds
    assert ckpt.step == 12 and np.all(np.isfinite(ckpt.y))  # the last commit before step 14
    monkeypatch.setattr(ParticleFlow, "_field", real_field)
    assert main(["train", "--problem", str(problem), "--out", str(run), "--resume"]) == 0
    assert (run / "final.npz").read_bytes() == (tmp_path / "reference" / "final.npz").read_bytes()
    assert (run / "trajectory.csv").read_bytes() == (tmp_path / "reference" / "trajectory.csv").read_bytes()


def test_resume_after_a_kill_before_the_first_checkpoint_starts_afresh(tmp_path, capsys):
    """config.toml written, no checkpoint yet (a kill in between): --resume starts the run over."""
    problem = _problem(tmp_path, steps=5, every=2)
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "reference")]) == 0
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_bytes((tmp_path / "reference" / "config.toml").read_bytes())
    (run / "trajectory.csv").write_text("step,ti")  # a half-written row
    assert main(["train", "--problem", str(problem), "--out", str(run), "--resume"]) == 0
    assert (run / "final.npz").read_bytes() == (tmp_path / "reference" / "final.npz").read_bytes()
    assert (run / "trajectory.csv").read_bytes() == (tmp_path / "reference" / "trajectory.csv").read_bytes()
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.toml").write_text("[teacher]\n")  # another run's configuration: still refused
    assert main(["train", "--problem", str(problem), "--out", str(other), "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err
