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

A long run shows where it is: given a ``progress`` stream, :func:`train` writes a line after
its first step and then at most every ``progress_interval`` seconds (default
:data:`PROGRESS_INTERVAL`) with the wall time elapsed, the step, the simulated time ``t/T``
(``step/steps`` for a run by steps) and an ETA from the rate of progress in this call. It
checkpoints every ``checkpoint_every`` steps and also after the first step that ends
``checkpoint_seconds`` of wall time after the last checkpoint; a checkpoint only saves the
state, so neither changes the run's numbers, and a resume from either is bitwise identical.
"""

from __future__ import annotations

import json
import math
import time as wallclock
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from ..config import load_problem
from ..io import atomic_write_text, check_output_folder, claim_output_folder, save_npz
from ..measure import ParticleMeasure
from ..problem import AttentionLandscape
from .birth_death import stochastic_birth_death
from .config import DynamicsConfig, init_table, parse_dynamics, parse_init
from .flow import FieldValue, Layout, ParticleFlow
from .initialisation import initial_measure
from .integrators import STIFF_RATIO, TABLEAUS, StepSizeUnderflow, adaptive_step, rk_step
from .perturbation import hessian_kick, isotropic_kick
from .rosenbrock import adaptive_rosenbrock_step
from .rundir import Checkpoint, RunDirectory, dumps_toml

__all__ = ["RunResult", "train", "resolved_config", "STIFF_STEPS", "CALM_STEPS", "PROGRESS_INTERVAL"]

PROGRESS_INTERVAL = 5.0
"""Default least wall-clock seconds between two progress lines."""

STIFF_STEPS = 15
"""Stability-limited accepted steps (a streak, see :data:`CALM_STEPS`) that mark a run stiff (Hairer's DOPRI5: 15)."""
CALM_STEPS = 6
"""Non-limited accepted steps in a row that end a streak of stability-limited ones (Hairer's DOPRI5: 6)."""


@dataclass(frozen=True)
class RunResult:
    """How a run ended.

    Attributes:
        status: ``completed``, or why it stopped (``nonfinite``, ``singular``,
            ``negative_weight``, ``step_size_underflow``).
        message: one line for humans.
        steps, time: progress reached; loss: ``L_N(µ)`` of the last good state;
        grad_norm: its stationarity residual; evaluations: field evaluations in this call.
        wall_seconds: wall time of this call.
        jacobian_products: Jacobian-vector products in this call (``rosenbrock23`` only).
        stiff_since: the time from which an explicit pair was held at its stability limit
            (:data:`STIFF_STEPS` limited steps), or None: the flow stayed non-stiff for it,
            or the scheme does not test (fixed steps, ``rosenbrock23``).
    """

    status: str
    message: str
    steps: int
    time: float
    loss: float
    grad_norm: float
    evaluations: int
    wall_seconds: float
    jacobian_products: int = 0
    stiff_since: float | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def stiff(self) -> bool:
        """The explicit integrator was held at its stability limit: ``rosenbrock23`` is made for this."""
        return self.stiff_since is not None


class _Stop(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def resolved_config(problem: str | Path) -> tuple[dict[str, Any], Any, Any, Any]:
    """Parse a problem file into ``(tables, spec, init, dynamics)``.

    ``tables`` is the whole file with every default of ``[init]`` and ``[dynamics]`` filled
    in and relative file paths made absolute; :func:`dumps_toml` of it is ``config.toml``.

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
    return tables, spec, init, dynamics


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
            (:func:`landscape.io.check_output_folder`).
        resume: continue from ``out/checkpoint.npz``; the problem must resolve to the same
            ``config.toml``.
        progress: a stream for progress lines (the CLI passes stderr unless ``--quiet``).
        progress_interval: least wall-clock seconds between two progress lines (≥ 0).
        force: start a fresh run in a non-empty folder that ``landscape train`` did not make
            (a folder that holds a run is still refused).

    Raises:
        ValueError: bad problem or configuration, a fresh run into a directory that holds
            one or holds files the tool did not make (without ``force``), or a resume without
            a checkpoint or with a different configuration.
    """
    if not progress_interval >= 0:
        raise ValueError(f"progress_interval must be ≥ 0 seconds, got {progress_interval!r}.")
    started = wallclock.perf_counter()
    resume_requested = resume
    tables, spec, init, dyn = resolved_config(problem)
    config_text = dumps_toml(tables)
    run = RunDirectory(out)
    landscape = spec.landscape()
    eta = dyn.timescale_ratio
    unborn = not run.checkpoint.exists() and run.config.exists() and run.config.read_text(encoding="utf-8") == config_text
    if resume and unborn:  # killed after writing config.toml, before its first checkpoint: start afresh
        resume = False
    if resume:
        if not run.checkpoint.exists():
            raise ValueError(f"cannot resume: {str(run.checkpoint)!r} does not exist.")
        if not run.config.exists() or run.config.read_text(encoding="utf-8") != config_text:
            raise ValueError(f"cannot resume: the problem does not resolve to {str(run.config)!r}.")
        ckpt = run.load_checkpoint()
        m = _particles_in(ckpt.y.size, spec.features, landscape.input_dim, not math.isinf(eta))
        layout = Layout(m, spec.features, landscape.input_dim, not math.isinf(eta))
        run.rewind_trajectory(ckpt.step, ckpt.last_row)
    else:
        if run.holds_run() and not (unborn and resume_requested):
            raise ValueError(f"{str(run.root)!r} already holds a run; pass --resume to continue it, or choose a new --out.")
        if not resume_requested:  # a resume request's own config.toml proves the folder is a run directory
            check_output_folder(run.root, "train", force)
        measure = initial_measure(init, landscape, spec.features)
        if dyn.birth_death.kind == "stochastic" and not np.allclose(measure.p, measure.p[0], rtol=0, atol=1e-15):
            raise ValueError("[dynamics.birth_death] kind = \"stochastic\" needs uniform weights p.")
        layout = Layout(measure.size, spec.features, landscape.input_dim, not math.isinf(eta))
        ckpt = None
    flow = ParticleFlow(landscape, layout, eta, dyn.birth_death.rate if dyn.birth_death.kind == "wfr" else 0.0)
    if ckpt is None:
        y = _initial_state(landscape, layout, measure)
        rng = np.random.default_rng(dyn.seed)
        try:
            info = _checked(flow, y, landscape)
        except _Stop as stop:
            raise ValueError(f"the initial measure cannot start a run: {stop}.") from None
        claim_output_folder(run.root, "train", force=force or resume_requested)
        atomic_write_text(run.config, config_text)
        run.start_trajectory()
        state = _State(y=y, step=0, time=0.0, h=dyn.step_size, offset=info.energy, last_kick=None)
        row = _row(layout, state, info, h=0.0, events=[])
        run.append_row(row)
        _commit(run, state, rng, row)
    else:
        rng = np.random.default_rng()
        rng.bit_generator.state = json.loads(ckpt.rng_state)
        state = _State(
            y=torch.as_tensor(ckpt.y, dtype=landscape.dtype, device=landscape.device),
            step=ckpt.step,
            time=ckpt.time,
            h=ckpt.step_size,
            offset=ckpt.energy_offset,
            last_kick=ckpt.last_kick,
        )
        info = _checked(flow, state.y, landscape)
    if resume:
        claim_output_folder(run.root, "train", force=True)  # the marker, for a run made before markers existed
    reporter = _Progress(progress, dyn, state, started, progress_interval) if progress is not None else None
    clock = _CheckpointClock(dyn.checkpoint_seconds)
    try:
        while not _done(state, dyn):
            info = _advance(flow, landscape, layout, dyn, state, info, rng, run, clock)
            if reporter is not None:
                reporter.update(state, info)
        status, message = "completed", f"completed {state.step} steps to t = {state.time:.6g}, loss {info.loss:.6g}"
        a, w, p, gamma, _ = layout.unpack(state.y)
        arrays = {"a": a.cpu().numpy(), "w": w.cpu().numpy(), "p": (p / p.sum()).cpu().numpy()}
        if gamma is not None:
            arrays["gamma"] = gamma.cpu().numpy()
        save_npz(run.final, **arrays)
    except _Stop as stop:
        status, message = stop.status, f"stopped at step {state.step + 1} (t = {state.time:.6g}): {stop}"
    run.write_status(
        {
            "status": status,
            "message": message,
            "steps": state.step,
            "time": state.time,
            "loss": info.loss,
            "grad_norm": info.grad_norm,
            "field_evaluations": flow.evaluations,
            "jacobian_products": flow.jacobian_products,
            "stiff": state.stiff_since is not None,
            "stiff_since": state.stiff_since,
        }
    )
    return RunResult(
        status,
        message,
        state.step,
        state.time,
        info.loss,
        info.grad_norm,
        flow.evaluations,
        wallclock.perf_counter() - started,
        flow.jacobian_products,
        state.stiff_since,
    )


# ----------------------------------------------------------------- internals
@dataclass
class _State:
    y: torch.Tensor
    step: int
    time: float
    h: float
    offset: float
    last_kick: float | None
    # stiffness detection (not checkpointed: a resume counts afresh)
    streak: int = 0
    calm: int = 0
    streak_start: float = 0.0
    stiff_since: float | None = None

    def observe_stiffness(self, ratio: float | None, start: float) -> None:
        """Count the accepted step that began at ``start`` with stiffness ratio ``ratio``."""
        if ratio is None:
            return
        if ratio >= STIFF_RATIO:
            if self.streak == 0:
                self.streak_start = start
            self.streak, self.calm = self.streak + 1, 0
            if self.streak >= STIFF_STEPS and self.stiff_since is None:
                self.stiff_since = self.streak_start
        else:
            self.calm += 1
            if self.calm >= CALM_STEPS:
                self.streak = 0


def _particles_in(size: int, k: int, d: int, gamma: bool) -> int:
    m, rest = divmod(size - 1 - (k * k if gamma else 0), k + d + 1)
    if rest or m < 1:
        raise ValueError(f"checkpoint state of length {size} does not fit k = {k}, d = {d}.")
    return m


def _initial_state(landscape: AttentionLandscape, layout: Layout, measure: ParticleMeasure) -> torch.Tensor:
    a, w, p = measure.tensors(landscape.dtype, landscape.device)
    gamma = None
    if layout.gamma:
        with torch.no_grad():
            gamma = landscape.gamma_star(a, w, p)
    return layout.pack(a, w, p, gamma, 0.0)


def _checked(flow: ParticleFlow, y: torch.Tensor, landscape: AttentionLandscape) -> FieldValue:
    """``flow.evaluate(y)``, or :class:`_Stop` when the state is no longer valid."""
    try:
        info = flow.evaluate(y)
    except torch.linalg.LinAlgError as err:
        raise _Stop("singular", f"Σ_µµ could not be solved ({' '.join(str(err).split())[:120]})") from None
    if not info.finite:
        raise _Stop("nonfinite", "the state or the field is no longer finite")
    if not info.sigma_min > landscape.singular_rtol * info.sigma_max:
        raise _Stop("singular", f"Σ_µµ became singular (λ_min = {info.sigma_min:.3e}, λ_max = {info.sigma_max:.3e})")
    if bool((flow.layout.unpack(y)[2] <= 0).any()):
        raise _Stop("negative_weight", "a weight p_i reached zero or below; take a smaller step_size")
    return info


def _done(state: _State, dyn: DynamicsConfig) -> bool:
    if dyn.steps is not None:
        return state.step >= dyn.steps
    return state.time >= dyn.time * (1.0 - 1e-14)


def _advance(
    flow, landscape, layout, dyn, state: _State, info: FieldValue, rng, run: RunDirectory, clock: _CheckpointClock
) -> FieldValue:
    """One step: perturbation if due, the integrator, stochastic birth–death, bookkeeping
    (a checkpoint every ``checkpoint_every`` steps, when ``clock`` is due, and at the end)."""
    events: list[str] = []
    kick = dyn.perturbation
    if kick.kind != "none" and info.grad_norm < kick.g_thr and (state.last_kick is None or state.time - state.last_kick >= kick.t_thr):
        y = _kicked(landscape, layout, state.y, kick.kind, kick.radius, rng)
        new = _checked(flow, y, landscape)
        state.offset += new.energy - info.energy
        state.y, info, state.last_kick = y, new, state.time
        events.append(f"kick:{kick.kind}")
    h_max = math.inf if dyn.time is None else dyn.time - state.time
    stiffness = None
    try:
        if dyn.integrator == "rosenbrock23":
            result = adaptive_rosenbrock_step(
                flow,
                flow.linearize(state.y).jvp,
                state.y,
                info.dy,
                state.h,
                dyn.rtol,
                dyn.atol,
                layout.error_mask(state.y),
                h_max,
                krylov_rtol=dyn.krylov_rtol,
                krylov_maxiter=dyn.krylov_maxiter,
            )
            y, h_used, h_next = result.y, result.h, result.h_next
        elif dyn.adaptive:
            mask = layout.error_mask(state.y)
            result = adaptive_step(flow, state.y, info.dy, state.h, TABLEAUS[dyn.integrator], dyn.rtol, dyn.atol, mask, h_max)
            y, h_used, h_next, stiffness = result.y, result.h, result.h_next, result.stiffness
        else:
            h_used, h_next = min(dyn.step_size, h_max), dyn.step_size
            y, _ = rk_step(flow, state.y, info.dy, h_used, TABLEAUS[dyn.integrator])
        if dyn.birth_death.kind == "stochastic":
            y, jump, counts = _birth_death(flow, layout, y, info, dyn.birth_death.rate, h_used, rng)
            state.offset += jump
            events += [f"{name}:{n}" for name, n in zip(("death", "birth"), counts, strict=True) if n]
    except StepSizeUnderflow as err:
        raise _Stop("step_size_underflow", str(err)) from None
    except torch.linalg.LinAlgError as err:
        raise _Stop("singular", f"Σ_µµ could not be solved within a step ({' '.join(str(err).split())[:120]})") from None
    new = _checked(flow, y, landscape)
    state.observe_stiffness(stiffness, state.time)
    state.y, state.step, state.time, state.h = y, state.step + 1, state.time + h_used, h_next
    last = _done(state, dyn)
    row = ""
    if events or last or state.step % dyn.record_every == 0:
        row = _row(layout, state, new, h_used, events)
        run.append_row(row)
    if dyn.snapshot_every and (state.step % dyn.snapshot_every == 0 or last):
        a, w, p, _, _ = layout.unpack(state.y)
        run.save_snapshot(state.step, state.time, a.cpu().numpy(), w.cpu().numpy(), p.cpu().numpy())
    if last or state.step % dyn.checkpoint_every == 0 or clock.due():
        _commit(run, state, rng, row)
        clock.restart()
    return new


def _kicked(landscape, layout: Layout, y: torch.Tensor, kind: str, radius: float, rng) -> torch.Tensor:
    a, w, p, gamma, dissipated = layout.unpack(y)
    if kind == "isotropic":
        delta = isotropic_kick(layout.m, layout.k + layout.d, radius, rng)
    else:
        measure = ParticleMeasure(a.cpu().numpy(), w.cpu().numpy(), (p / p.sum()).cpu().numpy())
        delta = hessian_kick(landscape, measure, radius, rng)
    delta = torch.as_tensor(delta, dtype=y.dtype, device=y.device)
    return layout.pack(a + delta[:, : layout.k], w + delta[:, layout.k :], p, gamma, dissipated)


def _birth_death(flow: ParticleFlow, layout: Layout, y, info: FieldValue, rate: float, h: float, rng):
    a, w, p, gamma, dissipated = layout.unpack(y)
    theta = torch.cat([a, w], dim=1).cpu().numpy()
    theta_new, deaths, births = stochastic_birth_death(theta, info.first_variation, rate, h, rng)
    if deaths + births == 0:
        return y, 0.0, (0, 0)
    before = flow.energy(y)
    theta_t = torch.as_tensor(theta_new, dtype=y.dtype, device=y.device)
    y_new = layout.pack(theta_t[:, : layout.k], theta_t[:, layout.k :], p, gamma, dissipated)
    return y_new, flow.energy(y_new) - before, (deaths, births)


def _row(layout: Layout, state: _State, info: FieldValue, h: float, events: list[str]) -> str:
    _, _, p, _, dissipated = layout.unpack(state.y)
    q = (p / p.sum()).cpu().numpy()
    entropy = float(-(q[q > 0] * np.log(q[q > 0])).sum())
    return RunDirectory.format_row(
        {
            "step": state.step,
            "time": state.time,
            "loss": info.loss,
            "energy": info.energy,
            "grad_norm": info.grad_norm,
            "sigma_min": info.sigma_min,
            "sigma_cond": info.sigma_max / info.sigma_min,
            "entropy": entropy,
            "energy_defect": info.energy - state.offset + float(dissipated),
            "step_size": h,
            "events": ";".join(events),
        }
    )


def _commit(run: RunDirectory, state: _State, rng: np.random.Generator, row: str) -> None:
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

    def __init__(self, stream: TextIO, dyn: DynamicsConfig, state: _State, started: float, interval: float) -> None:
        self.stream = stream
        self.dyn = dyn
        self.started = started
        self.interval = interval
        self.begin = wallclock.perf_counter()
        self.begin_fraction = self._fraction(state)
        self.first_step = state.step + 1
        self.last = -math.inf

    def _fraction(self, state: _State) -> float:
        return state.step / self.dyn.steps if self.dyn.steps is not None else state.time / self.dyn.time

    def update(self, state: _State, info: FieldValue) -> None:
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
