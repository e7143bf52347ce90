r"""``landscape train``: run the particle flow of a problem file into a run directory.

:func:`train` reads the problem (with its ``[init]`` and ``[dynamics]`` tables), builds the
initial measure and the flow, and integrates, recording the trajectory, snapshots and
checkpoints (:mod:`landscape.dynamics.rundir`). Everything the future of a run depends on —
the flat state, the step, the time, the trial step, the energy bookkeeping, the time of the
last perturbation and the random generator's state — is in the checkpoint, and every
computation from a state is deterministic, so ``resume=True`` after a kill reaches the
bitwise-identical ``final.npz``.

A run that meets a non-finite value, a singular ``Σ_µµ``, a negative weight or an adaptive
step that underflows stops there: the last good state stays in ``checkpoint.npz`` and
``status.json`` says why (non-convergence is data, not a crash).

Stiffness is data too. An explicit adaptive pair (``rk23``, ``dopri5``) reports with every
accepted step its stiffness ratio ``h·ρ / boundary`` (:mod:`.integrators`: Shampine's estimate
``ρ`` of ``|λ|`` over the real stability boundary). After :data:`STIFF_STEPS` stability-limited
steps (ratio ≥ :data:`~landscape.dynamics.integrators.STIFF_RATIO`), counted as in Hairer's
DOPRI5 — a streak survives fewer than :data:`CALM_STEPS` non-limited steps in a row, the
controller's oscillation around the limit — the run is marked stiff: ``status.json`` gets
``"stiff": true`` and ``"stiff_since"``, the time the streak began, and the CLI suggests
``rosenbrock23``. The count is not checkpointed (the trajectory and the checkpoint stay as
they were): a resumed run counts afresh from its checkpoint, so a flow still stiff after the
resume is flagged again :data:`STIFF_STEPS` steps later, with ``stiff_since`` from then.

Accuracy: with ``hermite_order = "auto"`` (the default) the exact backend's Mehler order is
chosen once, for the initial measure's weights times :data:`TRAIN_HEADROOM` (a resume rebuilds
the initial measure and chooses the same); ``status.json`` ends with ``accuracy`` — the
backend's settings (the choice included), the truncation bound of the final kernels and the
jackknife standard error of the final loss (sampled expectations) — and each estimate above
its tolerance prints a ``warning:`` line on stderr naming the setting.

``[dynamics] scheme = "prompts"`` trains the real model instead (:mod:`.prompts`: the MLP and the
attention ``W`` jointly by SGD on sampled prompts, set by the ``[prompts]`` table) into the same
layout: ``trajectory.csv`` with :data:`~landscape.dynamics.prompts.COLUMNS`, ``final.npz`` with
the particles, ``W`` and ``Γ(W)``, and checkpoints holding the parameters, the step and the
generator's state (taken between two steps, so a resume is bitwise identical).

A long run shows where it is: given a ``progress`` stream, :func:`train` writes a line after
its first step and then at most every ``progress_interval`` seconds (default
:data:`PROGRESS_INTERVAL`) with the wall time elapsed, the step, the simulated time ``t/T``
(``step/steps`` for a run by steps) and an ETA from the rate of progress in this call. It
checkpoints every ``checkpoint_every`` steps and also after the first step that ends
``checkpoint_seconds`` of wall time after the last checkpoint; a checkpoint only saves the
state, so neither changes the run's numbers, and a resume from either is bitwise identical.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import sys
import time as wallclock
import tomllib
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from ..io.files import atomic_write_text, check_output_folder, claim_output_folder, output_lock, save_npz
from ..io.problem import ProblemSpec, load_problem
from ..landscape import JACKKNIFE_GROUPS, _jackknife_stderr
from ..model.expectations import AUTO_KERNEL_TOL, truncation_bound
from .config import DynamicsConfig, init_table, parse_dynamics, parse_init, parse_prompts, prompts_table
from .flow import FieldValue
from .initialisation import initial_measure
from .prompts import COLUMNS as PROMPT_COLUMNS
from .prompts import PromptTrainer
from .rundir import COLUMNS, Checkpoint, RunDirectory, dumps_toml
from .simulate import CALM_STEPS, STIFF_STEPS, FlowState, Observer, RunResult, Simulation

__all__ = ["RunResult", "train", "resolved_config", "config_text", "read_run_config", "STIFF_STEPS", "CALM_STEPS", "PROGRESS_INTERVAL"]

PROGRESS_INTERVAL = 5.0
"""Default least wall-clock seconds between two progress lines."""



def resolved_config(problem: str | Path) -> tuple[dict[str, Any], Any, Any, Any]:
    """Parse a problem file into ``(tables, spec, init, dynamics)``.

    ``tables`` is the whole file with every default of ``[init]`` and ``[dynamics]`` filled
    in and relative file paths made absolute; :func:`config_text` of it is ``config.toml``.

    Raises:
        ValueError: any invalid table or key (one message naming it).
    """
    path = Path(problem)
    spec = load_problem(path)
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    base = path.parent.resolve()
    init = parse_init(spec.tables.get("init"), base)
    dynamics = parse_dynamics(spec.tables.get("dynamics"))
    tables = {name: dict(value) for name, value in raw.items() if name not in ("init", "dynamics")}
    for table, key in (("teacher", "file"), ("input", "data")):
        if isinstance(tables.get(table, {}).get(key), str):
            tables[table][key] = str((base / tables[table][key]).resolve())
    tables["init"] = init_table(init)
    tables["dynamics"] = dynamics.to_table()
    if dynamics.scheme == "prompts":
        tables["prompts"] = prompts_table(parse_prompts(spec.tables.get("prompts"), spec.prompt_length))
    elif "prompts" in tables:
        raise ValueError('[prompts] is only used with [dynamics] scheme = "prompts".')
    return tables, spec, init, dynamics


#: the tables' keys that reference a file whose content the run depends on.
INPUT_FILES = (("teacher", "file"), ("input", "data"))
_HASH_LINE = re.compile(r'^# sha256 ([a-z]+\.[a-z]+) = "([0-9a-f]{64})"$', re.MULTILINE)


def config_text(tables: dict[str, Any]) -> str:
    """``config.toml``: :func:`dumps_toml` of ``tables`` headed by one comment line
    ``# sha256 <table>.<key> = "<hex>"`` per referenced input file (:data:`INPUT_FILES`), so the
    file stays a problem file and a changed input changes it.

    Raises:
        ValueError: a referenced file that cannot be read (naming it).
    """
    lines = []
    for table, key in INPUT_FILES:
        path = tables.get(table, {}).get(key)
        if isinstance(path, str):
            lines.append(f'# sha256 {table}.{key} = "{_file_sha256(Path(path))}"\n')
    header = "# sha256 of the files this run reads; `landscape train --resume` refuses a change:\n" if lines else ""
    return header + "".join(lines) + dumps_toml(tables)


def _file_sha256(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as err:
        raise ValueError(f"cannot read {str(path)!r} to record its sha256 ({err.strerror or type(err).__name__}).") from None


def _resume_mismatch(run: RunDirectory, tables: dict[str, Any], text: str) -> str | None:
    """Why the problem as it resolves now (``text``) cannot continue ``run``; None when it can."""
    stored = run.config.read_text(encoding="utf-8") if run.config.is_file() else None
    if stored == text:
        return None
    if stored is None:
        return f"{str(run.config)!r} does not exist"
    then, now = dict(_HASH_LINE.findall(stored)), dict(_HASH_LINE.findall(text))
    for name, digest in now.items():
        if name in then and then[name] != digest:
            table, key = name.split(".")
            return (f"the file {tables[table][key]!r} ([{table}] {key}) changed since the run started "
                    f"(sha256 {then[name][:12]}… then, {digest[:12]}… now)")
    return f"the problem does not resolve to {str(run.config)!r}"


def read_run_config(run: str | Path) -> tuple[ProblemSpec, DynamicsConfig]:
    """A run directory's ``config.toml``, validated as ``landscape train`` validates a problem file.

    Returns the problem (:class:`~landscape.io.problem.ProblemSpec`; ``noise``,
    ``prompt_length``, ``tables``) and the ``[dynamics]`` settings.

    Raises:
        ValueError: ``config.toml`` missing, unreadable or invalid (one message naming it).
    """
    path = RunDirectory(run).config
    if not path.is_file():
        raise ValueError(f"run configuration {str(path)!r} does not exist.")
    spec = load_problem(path)
    return spec, parse_dynamics(spec.tables.get("dynamics"))


def train(
    problem: str | Path,
    out: str | Path,
    resume: bool = False,
    progress: TextIO | None = None,
    progress_interval: float = PROGRESS_INTERVAL,
    force: bool = False,
) -> RunResult:
    """Run (or, with ``resume``, continue) the flow of ``problem`` into the directory ``out``.

    Args:
        problem: the problem file (TOML with ``[init]`` and ``[dynamics]``).
        out: the run directory: new, empty or made by ``landscape train``
            (:func:`landscape.io.files.check_output_folder`).
        resume: continue from ``out/checkpoint.npz``; the problem must resolve to the same
            ``config.toml`` (input files' sha256 included), the checkpoint must carry its sha256
            and ``trajectory.csv`` every row the checkpoint counts.
        progress: a stream for progress lines (the CLI passes stderr unless ``--quiet``).
        progress_interval: least wall-clock seconds between two progress lines (≥ 0).
        force: start a fresh run in a non-empty folder that ``landscape train`` did not make
            (a folder that holds a run is still refused).

    Raises:
        ValueError: bad problem or configuration, a fresh run into a directory that holds
            one or holds files the tool did not make (without ``force``), another process
            running in ``out`` (:func:`landscape.io.files.output_lock`), or a resume without a
            checkpoint, with a different configuration or a changed input file (naming it), with
            a checkpoint written for another configuration or a trajectory missing rows the checkpoint counts.
    """
    if not progress_interval >= 0:
        raise ValueError(f"progress_interval must be ≥ 0 seconds, got {progress_interval!r}.")
    started = wallclock.perf_counter()
    tables, spec, init, dyn = resolved_config(problem)
    text = config_text(tables)
    run = RunDirectory(out, PROMPT_COLUMNS if dyn.scheme == "prompts" else COLUMNS)
    with output_lock(out):
        return _train_locked(run, tables, text, spec, init, dyn, resume, force, progress, progress_interval, started)


def _train_locked(
    run: RunDirectory,
    tables: dict[str, Any],
    text: str,
    spec: ProblemSpec,
    init: Any,
    dyn: DynamicsConfig,
    resume: bool,
    force: bool,
    progress: TextIO | None,
    progress_interval: float,
    started: float,
) -> RunResult:
    """:func:`train` once the run directory is locked (:func:`landscape.io.files.output_lock`)."""
    resume_requested = resume
    landscape = _landscape(spec, init)
    unborn = not run.checkpoint.exists() and run.config.exists() and run.config.read_text(encoding="utf-8") == text
    if resume and unborn:  # killed after writing config.toml, before its first checkpoint: start afresh
        resume = False
    if resume:
        if not run.checkpoint.exists():
            raise ValueError(f"cannot resume: {str(run.checkpoint)!r} does not exist.")
        mismatch = _resume_mismatch(run, tables, text)
        if mismatch is not None:
            raise ValueError(f"cannot resume: {mismatch}.")
        ckpt = run.load_checkpoint()
        if ckpt.config_sha256 != _sha256_text(text):
            raise ValueError(f"cannot resume: checkpoint file {str(run.checkpoint)!r} was written for another "
                             "config.toml (copied from another run?); start a new run.")
        run.check_trajectory(ckpt.step, ckpt.rows, ckpt.last_row)
        state = FlowState(
            y=torch.as_tensor(ckpt.y, dtype=landscape.dtype, device=landscape.device),
            step=ckpt.step,
            time=ckpt.time,
            h=ckpt.step_size,
            offset=ckpt.energy_offset,
            last_kick=ckpt.last_kick,
        )
        rng = np.random.default_rng()
        rng.bit_generator.state = json.loads(ckpt.rng_state)
        if dyn.scheme == "prompts":
            sim = PromptTrainer.from_checkpoint(spec, parse_prompts(tables["prompts"]), dyn, ckpt.y, ckpt.step, rng)
        else:
            sim = Simulation.from_state(landscape, spec.features, dyn, state, rng)
        run.rewind_trajectory(ckpt.step, ckpt.last_row)
        claim_output_folder(run.root, "train", force=True)  # the marker, for a run made before markers existed
        rows = ckpt.rows
        run.write_status({"status": "running", "message": f"resumed at step {ckpt.step}"})
    else:
        if run.holds_run() and not (unborn and resume_requested):
            raise ValueError(f"{str(run.root)!r} already holds a run; pass --resume to continue it, or choose a new --out.")
        if not resume_requested:  # a resume request's own config.toml proves the folder is a run directory
            check_output_folder(run.root, "train", force)
        start = initial_measure(init, landscape, spec.features)
        if dyn.scheme == "prompts":
            sim = PromptTrainer.fresh(spec, start, parse_prompts(tables["prompts"]), dyn)
        else:
            sim = Simulation.fresh(landscape, start, dyn, spec.features)
        claim_output_folder(run.root, "train", force=force or resume_requested)
        atomic_write_text(run.config, text)
        rows = 0
        run.write_status({"status": "running", "message": "started"})
        run.start_trajectory()
    paced = dataclasses.replace(dyn, steps=sim.prompts.total_steps, time=None) if dyn.scheme == "prompts" else dyn
    reporter = _Progress(progress, paced, sim.state, started, progress_interval) if progress is not None else None
    status, message = sim.run(_RunFiles(run, dyn.checkpoint_seconds, reporter, _sha256_text(text), rows))
    if status == "completed":
        save_npz(run.final, **sim.final_arrays())
    result = sim.result(status, message, 0.0)
    run.write_status(
        {
            "status": status,
            "message": message,
            "steps": result.steps,
            "time": result.time,
            "loss": result.loss,
            "grad_norm": result.grad_norm,
            "field_evaluations": result.evaluations,
            "jacobian_products": result.jacobian_products,
            "stiff": result.stiff,
            "stiff_since": result.stiff_since,
            **({} if dyn.scheme == "prompts" else {"accuracy": _accuracy(landscape, sim.final_arrays(), result.loss)}),
        }
    )
    return sim.result(status, message, wallclock.perf_counter() - started)


# ----------------------------------------------------------------- internals
#: factor on the initial weights when ``hermite_order = "auto"`` picks the order of a run (the
#: flow changes |w|; the final record reports the truncation bound actually reached).
TRAIN_HEADROOM = 1.5
#: a loss sampling standard error above this, relative to ``max(|L|, 1e-6 · ceiling)``, warns
#: (``landscape evaluate``'s tolerance, :data:`landscape.cli.common.SAMPLING_RTOL`).
SAMPLING_WARN_RTOL = 1e-3


def _landscape(spec: ProblemSpec, init: Any):
    """The run's landscape: with ``hermite_order = "auto"``, the order chosen for the initial measure's
    weights times :data:`TRAIN_HEADROOM` (deterministic, so a resume chooses the same); else the given one."""
    landscape = spec.landscape()
    if not (spec.auto_order and spec.method == "exact"):
        return landscape
    start = initial_measure(init, landscape, spec.features)
    landscape = spec.landscape(weights=start.w, headroom=TRAIN_HEADROOM)
    choice = landscape.expectation.order_choice
    if not choice["met"]:
        print(
            f"warning: hermite_order = \"auto\": the Mehler truncation bound {choice['bound']:.1e} at the largest order "
            f"{landscape.expectation.quadrature.order} exceeds {choice['tolerance']:g} for the initial weights (× "
            f"{TRAIN_HEADROOM:g}); set hermite_order higher explicitly.",
            file=sys.stderr,
        )
    return landscape


def _accuracy(landscape, arrays: dict[str, np.ndarray], loss: float) -> dict[str, Any]:
    """The accuracy of a run's final numbers, cheaply (no re-evaluation at other orders), for ``status.json``.

    ``expectation``: the backend's settings (the chosen order with ``hermite_order_auto``);
    ``kernel_truncation``: :func:`~landscape.model.expectations.truncation_bound` at the final
    weights (exact backend; 0 for closed forms); ``loss_sampling``: the delete-a-group
    jackknife standard error of the final loss (sampled backend, or the exact backend's
    ``Q_µ`` sample at finite ``N``; 0 otherwise; None when a group's Σ_µµ is singular).
    Each estimate above its tolerance prints a ``warning:`` line on stderr naming the setting.
    """
    exp = landscape.expectation
    out: dict[str, Any] = {"expectation": exp.describe(), "kernel_truncation": 0.0, "loss_sampling": 0.0}
    a, w, p = (torch.as_tensor(arrays[key], dtype=landscape.dtype, device=landscape.device) for key in ("a", "w", "p"))
    if exp.method == "exact":
        out["kernel_truncation"] = truncation_bound(exp.quadrature, landscape.teacher, exp.activation, exp.bias, arrays["w"])
    if exp.method == "monte_carlo" or landscape.finite_prompt:
        groups = min(JACKKNIFE_GROUPS, exp.samples if exp.method == "monte_carlo" else exp.fourth_samples)
        try:
            with torch.no_grad():
                runs = [{"loss": float(landscape.with_expectation(e).loss(a, w, p))} for e in exp.jackknife(groups)]
            out["loss_sampling"] = _jackknife_stderr(runs)["loss"]
        except (ValueError, torch.linalg.LinAlgError):  # fewer than 2 rows, or a group's Σ_µµ singular
            out["loss_sampling"] = None
    if out["kernel_truncation"] > AUTO_KERNEL_TOL:
        print(
            f"warning: final kernels' Mehler truncation bound {out['kernel_truncation']:.1e} exceeds {AUTO_KERNEL_TOL:g} "
            f"(hermite_order = {exp.quadrature.order}); raise hermite_order.",
            file=sys.stderr,
        )
    scale = max(abs(loss), 1e-6 * landscape.loss_bounds()[1])
    if out["loss_sampling"] is not None and out["loss_sampling"] > SAMPLING_WARN_RTOL * scale:
        key = "samples" if exp.method == "monte_carlo" else "fourth_moment_samples"
        print(
            f"warning: final loss sampling error {out['loss_sampling']:.1e} (relative {out['loss_sampling'] / scale:.1e}) "
            f"exceeds {SAMPLING_WARN_RTOL:g}; raise {key}.",
            file=sys.stderr,
        )
    return out


class _RunFiles(Observer):
    """The file layer of a run: rows appended to ``trajectory.csv``, snapshots, checkpoints
    (when due and every ``checkpoint_seconds`` of wall time) and progress lines."""

    def __init__(
        self, run: RunDirectory, checkpoint_seconds: float, reporter: _Progress | None, config_sha256: str, rows: int
    ) -> None:
        self.run = run
        self.clock = _CheckpointClock(checkpoint_seconds)
        self.reporter = reporter
        self.config_sha256 = config_sha256
        self.rows = rows

    def begin(self, state: FlowState, info: FieldValue, rng: np.random.Generator, row: dict[str, Any]) -> None:
        line = RunDirectory.format_row(row, self.run.columns)
        self.run.append_row(line)
        self.rows += 1
        _commit(self.run, state, rng, line, self.rows, self.config_sha256)

    def row(self, row: dict[str, Any]) -> None:
        self.run.append_row(RunDirectory.format_row(row, self.run.columns))
        self.rows += 1

    def snapshot(self, step: int, time: float, a: np.ndarray, w: np.ndarray, p: np.ndarray) -> None:
        self.run.save_snapshot(step, time, a, w, p)

    def step(
        self, state: FlowState, info: FieldValue, rng: np.random.Generator, row: dict[str, Any] | None, checkpoint_due: bool
    ) -> None:
        if checkpoint_due or self.clock.due():
            _commit(self.run, state, rng, "" if row is None else RunDirectory.format_row(row, self.run.columns), self.rows, self.config_sha256)
            self.clock.restart()
        if self.reporter is not None:
            self.reporter.update(state, info)


def _sha256_text(text: str) -> str:
    """sha256 (hex) of ``text`` in UTF-8: what a checkpoint records of its ``config.toml``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _commit(
    run: RunDirectory, state: FlowState, rng: np.random.Generator, row: str, rows: int, config_sha256: str
) -> None:
    run.save_checkpoint(
        Checkpoint(
            y=state.y.cpu().numpy(),
            step=state.step,
            time=state.time,
            step_size=state.h,
            energy_offset=state.offset,
            last_kick=state.last_kick,
            rng_state=json.dumps(rng.bit_generator.state),
            last_row=row,
            rows=rows,
            config_sha256=config_sha256,
        )
    )


class _CheckpointClock:
    """Wall-clock checkpoint period: :meth:`due` once ``seconds`` passed since the last (re)start (0: never)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last = wallclock.perf_counter()

    def due(self) -> bool:
        return self.seconds > 0 and wallclock.perf_counter() - self.last >= self.seconds

    def restart(self) -> None:
        self.last = wallclock.perf_counter()


class _Progress:
    """Progress lines on a stream: after the first step of this call, then at most every ``interval`` seconds.

    Each line: wall time since ``started``, the step, ``t/T`` (``step/steps`` for a run by
    steps) with the percentage, an ETA from the progress made per wall second since the
    first step of this call began (so a resumed run estimates from its own pace), the loss
    and the stationarity residual.
    """

    def __init__(self, stream: TextIO, dyn: DynamicsConfig, state: FlowState, started: float, interval: float) -> None:
        self.stream = stream
        self.dyn = dyn
        self.started = started
        self.interval = interval
        self.begin = wallclock.perf_counter()
        self.begin_fraction = self._fraction(state)
        self.first_step = state.step + 1
        self.last = -math.inf

    def _fraction(self, state: FlowState) -> float:
        return state.step / self.dyn.steps if self.dyn.steps is not None else state.time / self.dyn.time

    def update(self, state: FlowState, info: FieldValue) -> None:
        now = wallclock.perf_counter()
        if state.step != self.first_step and now - self.last < self.interval:
            return
        self.last = now
        fraction = self._fraction(state)
        rate = (fraction - self.begin_fraction) / max(now - self.begin, 1e-9)
        eta = _clock_text((1.0 - fraction) / rate) if rate > 0 else "?"
        where = (
            f"step {state.step}/{self.dyn.steps}"
            if self.dyn.steps is not None
            else f"step {state.step}  t {state.time:.4g}/{self.dyn.time:.4g}"
        )
        self.stream.write(
            f"train: {_clock_text(now - self.started)} elapsed  {where} ({100 * fraction:.1f}%)  ETA {eta}  "
            f"loss {info.loss:.6g}  |∇| {info.grad_norm:.2e}\n"
        )
        self.stream.flush()


def _clock_text(seconds: float) -> str:
    """``H:MM:SS`` (``M:SS`` under an hour)."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
