"""End-to-end tests of :func:`landscape.dynamics.train` and ``landscape train`` (docs/theory.md §6, §9, §10).

Realizable convergence, a saddle that stays a saddle and is escaped with a kick, birth–death
off a plateau, the η → ∞ limit, run-directory contents, and kill −9 then ``--resume``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ERF_TEACHER_TOML, KICKED_RUN_TOML

from landscape import ParticleMeasure
from landscape.cli import main
from landscape.dynamics import train
from landscape.dynamics.rundir import RunDirectory
from verification.parallel import single_thread

S = 1.5
SADDLE = ParticleMeasure(np.eye(2), S * np.eye(3)[[0, 2]])  # docs/theory.md §9: e_2 unlearned, dead neuron at s e_3
SADDLE_LOSS = 0.5 * (2 / np.pi) * np.arcsin(2 * S**2 / (1 + 2 * S**2))  # ½ κ(u_2, u_2)


def _problem(tmp_path: Path, body: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(ERF_TEACHER_TOML + body)
    return path


def _rows(run: Path) -> list[dict]:
    with open(run / "trajectory.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_realizable_problem_reaches_the_global_minimum(tmp_path):
    """M = L = 2 particles, erf teacher (k = k° = 2, d = 3): L − L* < 1e-8 (docs/theory.md §10.3)."""
    body = '[init]\nparticles = 2\nseed = 0\n[dynamics]\ntime = 200.0\nintegrator = "dopri5"\n'
    body += "rtol = 1e-7\natol = 1e-10\nrecord_every = 50\n"
    result = train(_problem(tmp_path, body), tmp_path / "run")
    assert result.completed
    assert result.loss < 1e-8
    rows = _rows(tmp_path / "run")
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 1e-8 and all(b <= a + 1e-12 for a, b in zip(losses, losses[1:], strict=False))
    assert max(abs(float(r["energy_defect"])) for r in rows) < 1e-5
    final = ParticleMeasure.load(tmp_path / "run" / "final.npz")
    assert final.size == 2 and (tmp_path / "run" / "config.toml").exists()


def _saddle_body(tmp_path: Path, kick: str, time_: float) -> str:
    SADDLE.save(tmp_path / "saddle.npz")
    body = f'[init]\nkind = "saddle"\nmeasure = "saddle.npz"\n[dynamics]\ntime = {time_}\nintegrator = "rk23"\nstep_size = 0.1\n'
    if kick != "none":
        body += f'[dynamics.perturbation]\nkind = "{kick}"\ng_thr = 1e-6\nt_thr = 1000.0\nradius = 1e-3\n'
    return body


def test_run_started_at_a_saddle_stays_there(tmp_path):
    """Started exactly at the §9 strict saddle without perturbation, the flow does not move."""
    result = train(_problem(tmp_path, _saddle_body(tmp_path, "none", 50.0)), tmp_path / "run")
    final = ParticleMeasure.load(tmp_path / "run" / "final.npz")
    assert result.loss == pytest.approx(SADDLE_LOSS, rel=1e-12)
    assert np.abs(final.w - SADDLE.w).max() < 1e-12 and np.abs(final.a - SADDLE.a).max() < 1e-12


@pytest.mark.parametrize("kick", ["isotropic", "hessian"])
def test_perturbation_escapes_the_saddle(tmp_path, kick):
    """One kick of radius 1e-3 at the saddle, then the flow falls to the global minimum (docs/theory.md §10.3)."""
    result = train(_problem(tmp_path, _saddle_body(tmp_path, kick, 40.0)), tmp_path / "run")
    rows = _rows(tmp_path / "run")
    kicks = [r for r in rows if r["events"]]
    assert [r["events"] for r in kicks] == [f"kick:{kick}"] and int(kicks[0]["step"]) == 1  # the row ending step 0
    assert result.loss < 1e-3 * SADDLE_LOSS


def _scout_start(tmp_path: Path) -> None:
    """10 particles on u_1, 9 dead at s e_3 and one scout on u_2 sharing a = e_2 with the dead: the
    plain flow sits on the saddle's plateau (feature 2 is mostly the dead neurons' σ(s x_3))."""
    eye = np.eye(3)
    a = np.array([[1.0, 0.0]] * 10 + [[0.0, 1.0]] * 10)
    w = S * np.array([eye[0]] * 10 + [eye[2]] * 9 + [eye[1]])
    ParticleMeasure(a, w).save(tmp_path / "start.npz")


def test_birth_death_reaches_the_minimum_where_the_plain_flow_stalls(tmp_path):
    """docs/theory.md §10.7: from the scout start, birth–death reaches L − L* < 1e-8 by t = 1; the plain flow
    is still on the plateau (above 0.9 of the saddle loss; it leaves it only near t ≈ 4).

    Why α = 1e6: near the minimum every force is made by the residual dead mass q itself
    (δL/δµ at the dead particles is ∝ q, since δL/δµ ≡ 0 at a realizable minimum), so the
    Wasserstein–Fisher–Rao weights obey dq/dt ∝ −α q², q ~ 1/(α t) and L ~ 1/(α t)²: L < 1e-8
    needs α t ≳ 1e4 (measured: 1.7e-5 at α = 50, t = 5; 1.1e-8 at α = 1e4, t = 1; 2.4e-12 here).
    The stochastic scheme removes the dead particles outright within the first steps and the
    copies left sit at the global minimum, up to the scout's drift before the last kill (its
    radial mode relaxes slowly, hence the small first step): ≤ 4.5e-10 over seeds 0–19.
    """
    _scout_start(tmp_path)
    losses, finals = {}, {}
    for kind in ("none", "wfr", "stochastic"):
        body = '[init]\nkind = "file"\nmeasure = "start.npz"\n[dynamics]\ntime = 1.0\nintegrator = "rk23"\n'
        body += f'step_size = 1e-5\nseed = 3\n[dynamics.birth_death]\nkind = "{kind}"\nrate = 1e6\n'
        with single_thread():  # ~1000 tiny field evaluations: torch's thread pool only spins on them
            result = train(_problem(tmp_path, body, f"{kind}.toml"), tmp_path / kind)
        assert result.completed
        losses[kind] = result.loss
        finals[kind] = ParticleMeasure.load(tmp_path / kind / "final.npz")
    assert losses["none"] > 0.9 * SADDLE_LOSS  # L* = 0: realizable teacher, N = ∞, τ = 0
    assert losses["wfr"] < 1e-8
    assert losses["stochastic"] < 1e-8
    dead = finals["wfr"].w[:, 2] > 1.0  # WFR cannot kill: the dead particles keep a tiny weight
    assert dead.sum() == 9 and 0 < finals["wfr"].p[dead].sum() < 1e-4
    assert not (finals["stochastic"].w[:, 2] > 1.0).any()  # every dead particle was replaced by a copy
    events = [r["events"] for r in _rows(tmp_path / "stochastic") if r["events"]]
    assert events and all(e.startswith(("death", "birth")) for e in events)


@pytest.mark.slow
def test_large_timescale_ratio_approaches_the_landscape_flow(tmp_path):
    """docs/theory.md §10.6: the distance to the η = ∞ flow at t = 2 falls like 1/η.

    The start is well conditioned (|Γ*| ≈ 2): the limit needs η above the particles' own rates,
    which grow like |Γ|² when Σ_µµ is ill conditioned.
    """
    finals = {}
    for eta in ("inf", 10, 100, 1000):
        body = '[init]\nparticles = 3\nseed = 5\nscale = 2.0\n[dynamics]\ntime = 2.0\nintegrator = "dopri5"\nrtol = 1e-9\natol = 1e-12\n'
        body += f'timescale_ratio = {eta if eta != "inf" else chr(34) + "inf" + chr(34)}\nrecord_every = 1000\n'
        train(_problem(tmp_path, body, f"{eta}.toml"), tmp_path / str(eta))
        finals[eta] = np.load(tmp_path / str(eta) / "final.npz")
    dist = {eta: np.abs(finals[eta]["w"] - finals["inf"]["w"]).max() for eta in (10, 100, 1000)}
    assert dist[100] < 0.5 * dist[10] and 0.05 * dist[100] < dist[1000] < 0.2 * dist[100]
    assert "gamma" in finals[10] and "gamma" not in finals["inf"]


def test_run_directory_contents(tmp_path):
    body = '[init]\nparticles = 3\n[dynamics]\nsteps = 6\nstep_size = 0.05\nrecord_every = 2\nsnapshot_every = 3\ncheckpoint_every = 4\n'
    result = train(_problem(tmp_path, body), tmp_path / "run")
    run = tmp_path / "run"
    expected = [".landscape-train", "checkpoint.npz", "config.toml", "final.npz", "snapshots", "status.json", "trajectory.csv"]
    assert sorted(p.name for p in run.iterdir()) == expected
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step_00000003.npz", "step_00000006.npz"]
    assert [int(r["step"]) for r in _rows(run)] == [0, 2, 4, 6]
    assert result.steps == 6 and result.time == pytest.approx(0.3)
    text = (run / "config.toml").read_text()
    assert 'integrator = "rk4"' in text and "[dynamics.birth_death]" in text


def test_singular_start_is_refused(tmp_path, capsys):
    """Σ_µµ singular at the start (two identical particles): one ``error:`` line, exit 2, nothing written."""
    ParticleMeasure(np.ones((2, 2)), np.ones((2, 3))).save(tmp_path / "twin.npz")
    problem = _problem(tmp_path, '[init]\nkind = "file"\nmeasure = "twin.npz"\n[dynamics]\nsteps = 3\n')
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the initial measure cannot start a run") and "singular" in err
    assert not (tmp_path / "run").exists()


def test_breakdown_mid_run_is_reported_as_data(tmp_path, capsys):
    """Explicit Euler with α h ≫ 1 drives a weight negative: the run stops (exit 1), status.json says
    why, and checkpoint.npz keeps the last good state."""
    body = '[init]\nparticles = 4\n[dynamics]\nsteps = 50\nstep_size = 0.5\nintegrator = "euler"\ncheckpoint_every = 1\n'
    body += '[dynamics.birth_death]\nkind = "wfr"\nrate = 100.0\n'
    run = tmp_path / "run"
    assert main(["train", "--problem", str(_problem(tmp_path, body)), "--out", str(run)]) == 1
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "negative_weight" and status["steps"] < 50
    assert not (run / "final.npz").exists()
    state = np.load(run / "checkpoint.npz")
    assert int(state["step"]) == status["steps"] and np.all(np.isfinite(state["y"]))


STIFF_BODY = """[init]
particles = 20
scale = 0.3
seed = 1
[dynamics]
time = 0.5
integrator = "{integrator}"
rtol = 1e-4
atol = 1e-7
record_every = 1000
"""


@pytest.mark.slow
def test_rosenbrock_on_a_stiff_flow(tmp_path):
    """λ_min(Σ_µµ) = 3e-5 makes the flow stiff: rosenbrock23 takes ≥ 5× fewer steps than rk23 at the same
    tolerances, ends at the same loss, and keeps the energy identity ≥ 10× better (rk23 sits at its
    stability limit, where the stiff modes stay excited)."""
    runs = {}
    for integrator in ("rk23", "rosenbrock23"):
        problem = _problem(tmp_path, STIFF_BODY.format(integrator=integrator), f"{integrator}.toml")
        runs[integrator] = (train(problem, tmp_path / integrator), _rows(tmp_path / integrator))
    (explicit, explicit_rows), (implicit, implicit_rows) = runs["rk23"], runs["rosenbrock23"]
    assert explicit.completed and implicit.completed
    assert float(implicit_rows[0]["sigma_min"]) < 1e-4
    assert explicit.steps > 5 * implicit.steps
    assert implicit.loss == pytest.approx(explicit.loss, rel=1e-4)
    decrease = float(implicit_rows[0]["loss"]) - implicit.loss
    assert abs(float(implicit_rows[-1]["energy_defect"])) < 1e-3 * decrease
    assert abs(float(explicit_rows[-1]["energy_defect"])) > 10 * abs(float(implicit_rows[-1]["energy_defect"]))
    status = json.loads((tmp_path / "rosenbrock23" / "status.json").read_text())
    assert status["jacobian_products"] == implicit.jacobian_products > 0


RESUME_BODY = KICKED_RUN_TOML.format(steps=400, checkpoint_every=7, snapshot_every=50)


@pytest.mark.slow
def test_kill_then_resume_is_bitwise_identical(tmp_path):
    """kill −9 in the middle of a CLI run, then ``--resume``: the same final.npz (and trajectory) bit for bit."""
    problem = _problem(tmp_path, RESUME_BODY)
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "reference")]) == 0
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "landscape.cli", "train", "--problem", str(problem), "--out", str(run)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "checkpoint.npz").exists() and len((run / "trajectory.csv").read_text().splitlines()) > 40:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "final.npz").exists()
    assert main(["train", "--problem", str(problem), "--out", str(run), "--resume"]) == 0
    reference = tmp_path / "reference"
    assert (run / "final.npz").read_bytes() == (reference / "final.npz").read_bytes()
    assert (run / "trajectory.csv").read_text() == (reference / "trajectory.csv").read_text()
    assert (run / "checkpoint.npz").read_bytes() == (reference / "checkpoint.npz").read_bytes()
    events = [r["events"] for r in _rows(reference) if r["events"]]
    assert any(e.startswith("kick") for e in events) and any("death" in e or "birth" in e for e in events)


def test_progress_lines_on_stderr_and_quiet(tmp_path, capsys):
    """Progress lines from the first step on (elapsed, t/T, ETA), at most one per interval; ``--quiet``: none."""
    problem = _problem(tmp_path, "[init]\nparticles = 2\n[dynamics]\ntime = 0.05\nstep_size = 0.01\n")
    args = ["train", "--problem", str(problem), "--progress-interval", "0"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith("completed 5 steps")
    lines = err.splitlines()
    assert len(lines) == 5 and all(line.startswith("train: ") and " elapsed " in line and "ETA " in line for line in lines)
    assert "step 1  t 0.01/0.05 (20.0%)" in lines[0] and "step 5  t 0.05/0.05 (100.0%)  ETA 0:00" in lines[-1]
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "b")]) == 0  # default interval: 5 s
    assert len(capsys.readouterr().err.splitlines()) == 1  # the first step only (the run takes < 5 s)
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    by_steps = _problem(tmp_path, "[init]\nparticles = 2\n[dynamics]\nsteps = 4\n", "steps.toml")
    stream = io.StringIO()
    train(by_steps, tmp_path / "d", progress=stream, progress_interval=0.0)
    assert "step 4/4 (100.0%)" in stream.getvalue().splitlines()[-1]
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "e"), "--progress-interval", "-1"]) == 2
    assert "progress_interval" in capsys.readouterr().err and not (tmp_path / "e").exists()


WALL_CLOCK_BODY = KICKED_RUN_TOML.format(steps=30, checkpoint_every=1000, snapshot_every=0)


def _checkpointed_steps(monkeypatch, interrupt_after: int | None = None) -> list[int]:
    """Record the step of every checkpoint written; raise KeyboardInterrupt after the one at ``interrupt_after``."""
    steps: list[int] = []
    real = RunDirectory.save_checkpoint

    def recording(self, ckpt):
        real(self, ckpt)
        steps.append(ckpt.step)
        if ckpt.step == interrupt_after:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDirectory, "save_checkpoint", recording)
    return steps


def test_wall_clock_checkpoints_change_no_number_and_resume_bitwise(tmp_path, monkeypatch):
    """checkpoint_seconds tiny: a checkpoint after every step, the first included (checkpoint_every = 1000
    alone writes only steps 0 and 30); the run is bitwise the run without them, and a run interrupted
    after the wall-clock checkpoint of step 5 resumes to the same bytes."""
    timed = WALL_CLOCK_BODY.replace("seed = 11\n", "seed = 11\ncheckpoint_seconds = 1e-9\n")
    steps = _checkpointed_steps(monkeypatch)
    train(_problem(tmp_path, WALL_CLOCK_BODY.replace("seed = 11\n", "seed = 11\ncheckpoint_seconds = 0\n"), "plain.toml"), tmp_path / "plain")
    assert steps == [0, 30]
    steps.clear()
    problem = _problem(tmp_path, timed, "timed.toml")
    train(problem, tmp_path / "reference")
    assert steps == list(range(31))
    reference, plain = tmp_path / "reference", tmp_path / "plain"
    for name in ("final.npz", "trajectory.csv"):
        assert (reference / name).read_bytes() == (plain / name).read_bytes(), name
    ours, theirs = RunDirectory(reference).load_checkpoint(), RunDirectory(plain).load_checkpoint()
    assert ours.config_sha256 != theirs.config_sha256  # the checkpoint belongs to its config.toml
    assert dataclasses.replace(ours, config_sha256="", y=None) == dataclasses.replace(theirs, config_sha256="", y=None)
    assert ours.y.tobytes() == theirs.y.tobytes()
    assert any(r["events"] for r in _rows(reference))  # the random generator was used (birth–death)
    steps = _checkpointed_steps(monkeypatch, interrupt_after=5)
    run = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(problem, run)
    assert RunDirectory(run).load_checkpoint().step == 5 and not (run / "final.npz").exists()
    train(problem, run, resume=True)
    for name in ("final.npz", "trajectory.csv", "checkpoint.npz"):
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name


def test_checkpoint_seconds_is_validated_and_documented(tmp_path, capsys):
    problem = _problem(tmp_path, "[dynamics]\nsteps = 2\ncheckpoint_seconds = -1\n")
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "run")]) == 2
    assert "[dynamics] checkpoint_seconds must be ≥ 0" in capsys.readouterr().err
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "checkpoint_seconds = 60.0" in readme and "--progress-interval" in readme


def test_stiff_flow_is_flagged(tmp_path, capsys):
    """rk23 held at its stability limit on the stiff flow (λ_min(Σ_µµ) = 3e-5, ~700 steps): status.json
    says ``"stiff": true`` from early on and the summary line points to rosenbrock23; the realizable
    M = 2 flow under dopri5 (step ratio h·ρ/boundary ≤ 0.16 there) is not flagged."""
    body = '[init]\nparticles = 20\nscale = 0.3\nseed = 1\n[dynamics]\ntime = 0.5\nintegrator = "rk23"\n'
    body += "rtol = 1e-4\natol = 1e-7\nrecord_every = 1000\n"
    assert main(["train", "--problem", str(_problem(tmp_path, body, "stiff.toml")), "--out", str(tmp_path / "stiff")]) == 0
    out = capsys.readouterr().out
    status = json.loads((tmp_path / "stiff" / "status.json").read_text())
    assert status["status"] == "completed" and status["steps"] > 500
    assert status["stiff"] is True and 0.0 <= status["stiff_since"] < 0.1
    assert "the flow became stiff at t = " in out and 'integrator = "rosenbrock23"' in out and out.count("\n") == 1
    body = '[init]\nparticles = 2\nseed = 0\n[dynamics]\ntime = 20.0\nintegrator = "dopri5"\n'
    body += "rtol = 1e-7\natol = 1e-10\nrecord_every = 50\n"
    calm = train(_problem(tmp_path, body, "calm.toml"), tmp_path / "calm")
    status = json.loads((tmp_path / "calm" / "status.json").read_text())
    assert calm.completed and not calm.stiff and calm.stiff_since is None
    assert status["stiff"] is False and status["stiff_since"] is None


def test_rosenbrock_run_resumes_bitwise(tmp_path, monkeypatch):
    """A rosenbrock23 run interrupted mid-way (an exception after step 9's checkpoint) and resumed
    ends with the same final.npz, trajectory and checkpoint bytes as an uninterrupted run."""
    train_module = sys.modules["landscape.dynamics.simulate"]  # the engine module that calls adaptive_rosenbrock_step
    body = STIFF_BODY.format(integrator="rosenbrock23").replace("time = 0.5", "steps = 20").replace("record_every = 1000", "record_every = 3")
    problem = _problem(tmp_path, body + "checkpoint_every = 4\n")
    reference = train(problem, tmp_path / "reference")
    assert reference.completed and reference.jacobian_products > 0
    real_step = train_module.adaptive_rosenbrock_step
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "adaptive_rosenbrock_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(problem, tmp_path / "run")
    monkeypatch.setattr(train_module, "adaptive_rosenbrock_step", real_step)
    assert not (tmp_path / "run" / "final.npz").exists()
    resumed = train(problem, tmp_path / "run", resume=True)
    assert resumed.completed and resumed.steps == 20
    for name in ("final.npz", "trajectory.csv", "checkpoint.npz"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name


def test_resolved_config_reruns_the_same_run(tmp_path):
    """``RUN/config.toml`` is a problem file: training from it again gives the same final.npz bit for bit."""
    body = '[init]\nkind = "region"\nparticles = 4\nradius = 0.2\n[dynamics]\nsteps = 5\nintegrator = "rk4"\n'
    problem = _problem(tmp_path, body)
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "first")]) == 0
    assert main(["train", "--problem", str(tmp_path / "first" / "config.toml"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "final.npz").read_bytes() == (tmp_path / "first" / "final.npz").read_bytes()
    assert (tmp_path / "again" / "config.toml").read_text() == (tmp_path / "first" / "config.toml").read_text()
