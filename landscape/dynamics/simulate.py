r"""The particle flow in memory: :func:`simulate` runs a flow from a measure and returns its
:class:`~landscape.dynamics.trajectory.Trajectory`; :class:`Simulation` is the engine that
``landscape train`` (:mod:`.train`) drives with a file layer (run directory, checkpoints,
resume, progress) as an :class:`Observer`.

One step (docs/theory.md §6): a perturbation if due (``[dynamics.perturbation]``), the
integrator (fixed Runge–Kutta, an adaptive pair, or ``rosenbrock23``), stochastic
birth–death, then the observer's hooks. Every computation from a state is deterministic and
the state (:class:`FlowState` and the generator) is all the future depends on, so the rows
:func:`simulate` returns are bit for bit those ``landscape train`` writes to
``trajectory.csv`` (``repr`` of each float), and a resumed run continues bit for bit.

A state that is no longer valid (non-finite, singular ``Σ_µµ``, a weight at zero, an adaptive
step that underflows) ends the run with that status; non-convergence is data, not a crash.
"""

from __future__ import annotations

import functools
import math
import time as wallclock
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..landscape import AttentionLandscape
from ..model.measure import ParticleMeasure
from .birth_death import stochastic_birth_death
from .config import DynamicsConfig, parse_dynamics
from .flow import FieldValue, Layout, ParticleFlow
from .integrators import STIFF_RATIO, TABLEAUS, StepSizeUnderflow, adaptive_step, rk_step
from .perturbation import hessian_kick, isotropic_kick
from .rosenbrock import adaptive_rosenbrock_step
from .trajectory import COLUMNS, Trajectory

__all__ = ["FlowState", "Observer", "RunResult", "Simulation", "simulate", "STIFF_STEPS", "CALM_STEPS"]

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


class Observer:
    """The hooks a :class:`Simulation` calls; each is a no-op here (subclass and override).

    ``row`` values are Python ``int``/``float``/``str`` (``events`` joined by ``;``).
    """

    def begin(self, state: FlowState, info: FieldValue, rng: np.random.Generator, row: dict[str, Any]) -> None:
        """A fresh run's first state (step 0) and its row; not called on a resumed run."""

    def row(self, row: dict[str, Any]) -> None:
        """A trajectory row was recorded after a step."""

    def snapshot(self, step: int, time: float, a: np.ndarray, w: np.ndarray, p: np.ndarray) -> None:
        """A measure snapshot is due: ``a`` (M, k), ``w`` (M, d), unnormalised ``p`` (M,)."""

    def step(
        self, state: FlowState, info: FieldValue, rng: np.random.Generator, row: dict[str, Any] | None, checkpoint_due: bool
    ) -> None:
        """After every accepted step: ``row`` the row recorded at it (or None); ``checkpoint_due``
        every ``checkpoint_every`` steps and at the last step."""


class Simulation:
    """A run of the flow in memory: a landscape, a layout, the ``[dynamics]`` settings, a state and a generator.

    Build with :meth:`fresh` (from a measure) or :meth:`from_state` (a checkpoint's state),
    then :meth:`run` it once.
    """

    def __init__(
        self,
        landscape: AttentionLandscape,
        layout: Layout,
        settings: DynamicsConfig,
        state: FlowState,
        rng: np.random.Generator,
        fresh: bool,
    ) -> None:
        self.landscape, self.layout, self.settings, self.state, self.rng = landscape, layout, settings, state, rng
        eta = settings.timescale_ratio
        rate = settings.birth_death.rate if settings.birth_death.kind == "wfr" else 0.0
        self.flow = ParticleFlow(landscape, layout, eta, rate, settings.engine)
        self._fresh = fresh
        if fresh:
            try:
                self.info = _checked(self.flow, state.y, landscape)
            except _Stop as stop:
                raise ValueError(f"the initial measure cannot start a run: {stop}.") from None
        else:
            self.info = _checked(self.flow, state.y, landscape)

    @classmethod
    def fresh(
        cls, landscape: AttentionLandscape, measure: ParticleMeasure, settings: DynamicsConfig, features: int | None = None
    ) -> Simulation:
        """Start at ``measure`` (M particles, ``a`` (M, k), ``w`` (M, d)); the generator seeded with ``settings.seed``.

        Raises:
            ValueError: stochastic birth–death with non-uniform weights, or a measure the
                flow cannot start from (singular ``Σ_µµ``, non-finite values).
        """
        if settings.birth_death.kind == "stochastic" and not np.allclose(measure.p, measure.p[0], rtol=0, atol=1e-15):
            raise ValueError("[dynamics.birth_death] kind = \"stochastic\" needs uniform weights p.")
        features = measure.features if features is None else features
        layout = Layout(measure.size, features, landscape.input_dim, not math.isinf(settings.timescale_ratio))
        y = _initial_state(landscape, layout, measure)
        state = FlowState(y=y, step=0, time=0.0, h=settings.step_size, offset=0.0, last_kick=None)
        sim = cls(landscape, layout, settings, state, np.random.default_rng(settings.seed), True)
        state.offset = sim.info.energy
        return sim

    @classmethod
    def from_state(
        cls,
        landscape: AttentionLandscape,
        features: int,
        settings: DynamicsConfig,
        state: FlowState,
        rng: np.random.Generator,
    ) -> Simulation:
        """Continue from ``state`` (a checkpoint's) with the generator ``rng`` in the state it was saved in.

        Raises:
            ValueError: ``state.y`` does not fit ``k = features`` and the landscape's ``d``, or holds
                a negative weight ``p`` or weights of zero total (never the state of a run).
        """
        gamma = not math.isinf(settings.timescale_ratio)
        m = _particles_in(state.y.numel(), features, landscape.input_dim, gamma)
        layout = Layout(m, features, landscape.input_dim, gamma)
        p = layout.unpack(state.y)[2]
        if bool((p < 0).any()) or not float(p.sum()) > 0:
            raise ValueError(f"checkpoint state holds a negative weight p (min {float(p.min()):.3g}) or weights of total "
                             f"{float(p.sum()):.3g}: no run reaches such a state; it cannot be resumed (start a new run).")
        return cls(landscape, layout, settings, state, rng, False)

    def run(self, observer: Observer | None = None) -> tuple[str, str]:
        """Integrate to the end (``steps`` or ``time``) or until the state is invalid; returns ``(status, message)``.

        ``status`` is ``completed``, ``nonfinite``, ``singular``, ``negative_weight`` or ``step_size_underflow``.
        """
        observer = observer or Observer()
        state, dyn = self.state, self.settings
        if self._fresh:
            self._fresh = False
            observer.begin(state, self.info, self.rng, _row(self.layout, state, self.info, h=0.0, events=[]))
        try:
            while not _done(state, dyn):
                self.info = _advance(self.flow, self.landscape, self.layout, dyn, state, self.info, self.rng, observer)
            return "completed", f"completed {state.step} steps to t = {state.time:.6g}, loss {self.info.loss:.6g}"
        except _Stop as stop:
            return stop.status, f"stopped at step {state.step + 1} (t = {state.time:.6g}): {stop}"

    def final_arrays(self) -> dict[str, np.ndarray]:
        """The measure now: ``a`` (M, k), ``w`` (M, d), normalised ``p`` (M,), and ``gamma`` (k, k) at finite η."""
        a, w, p, gamma, _ = self.layout.unpack(self.state.y)
        arrays = {"a": a.cpu().numpy(), "w": w.cpu().numpy(), "p": (p / p.sum()).cpu().numpy()}
        if gamma is not None:
            arrays["gamma"] = gamma.cpu().numpy()
        return arrays

    def result(self, status: str, message: str, wall_seconds: float) -> RunResult:
        """The :class:`RunResult` of a finished :meth:`run`."""
        s, info = self.state, self.info
        return RunResult(status, message, s.step, s.time, info.loss, info.grad_norm, self.flow.evaluations,
                         wall_seconds, self.flow.jacobian_products, s.stiff_since)


class _Collector(Observer):
    """Keeps every row in memory and forwards every hook to ``inner``."""

    def __init__(self, inner: Observer | None) -> None:
        self.rows: list[dict[str, Any]] = []
        self.inner = inner or Observer()

    def begin(self, state, info, rng, row) -> None:
        self.rows.append(row)
        self.inner.begin(state, info, rng, row)

    def row(self, row) -> None:
        self.rows.append(row)
        self.inner.row(row)

    def snapshot(self, step, time, a, w, p) -> None:
        self.inner.snapshot(step, time, a, w, p)

    def step(self, state, info, rng, row, checkpoint_due) -> None:
        self.inner.step(state, info, rng, row, checkpoint_due)


def simulate(
    landscape: AttentionLandscape,
    measure: ParticleMeasure,
    settings: DynamicsConfig | dict[str, Any],
    observer: Observer | None = None,
) -> Trajectory:
    """Run the flow of ``landscape`` from ``measure`` in memory, as ``landscape train`` would.

    Args:
        landscape: the problem.
        measure: the initial measure, ``a`` (M, k), ``w`` (M, d), ``p`` (M,).
        settings: a :class:`DynamicsConfig`, or a ``[dynamics]`` table (validated by
            :func:`~landscape.dynamics.config.parse_dynamics`).
        observer: optional hooks (:class:`Observer`) called as the run goes.

    Returns:
        the :class:`Trajectory`: one float64 array (R,) per numeric column of
        ``trajectory.csv`` and the ``events`` cells (R,), equal bit for bit to what
        ``landscape train`` writes for the same problem, initial measure and settings;
        ``result`` (:class:`RunResult`) and ``final`` (the arrays of ``final.npz``, or None
        when the run stopped early).

    Raises:
        ValueError: bad settings, or a measure the flow cannot start from.
    """
    started = wallclock.perf_counter()
    dyn = settings if isinstance(settings, DynamicsConfig) else parse_dynamics(settings)
    sim = Simulation.fresh(landscape, measure, dyn)
    collector = _Collector(observer)
    status, message = sim.run(collector)
    columns = {name: np.array([float(r[name]) for r in collector.rows]) for name in COLUMNS if name != "events"}
    events = [r["events"] for r in collector.rows]
    final = sim.final_arrays() if status == "completed" else None
    return Trajectory(columns, events, sim.result(status, message, wallclock.perf_counter() - started), final)


# ----------------------------------------------------------------- internals
@dataclass
class FlowState:
    """The state of a run between two steps (what a checkpoint holds, plus the stiffness count).

    Attributes:
        y: the flat state, shape ``(layout.size,)`` (:class:`~landscape.dynamics.flow.Layout`).
        step, time: progress; h: the next (trial) step size.
        offset: ``E(0)`` plus every jump of ``E`` caused by events.
        last_kick: time of the last perturbation, or None.
        streak, calm, streak_start, stiff_since: the stiffness count (not checkpointed).
    """

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
    if bool((flow.layout.unpack(_host(y))[2] <= 0).any()):
        raise _Stop("negative_weight", "a weight p_i reached zero or below; take a smaller step_size")
    return info


def _done(state: FlowState, dyn: DynamicsConfig) -> bool:
    if dyn.steps is not None:
        return state.step >= dyn.steps
    return state.time >= dyn.time * (1.0 - 1e-14)


def _advance(
    flow, landscape, layout, dyn, state: FlowState, info: FieldValue, rng, observer: Observer
) -> FieldValue:
    """One step: perturbation if due, the integrator, stochastic birth–death, then the
    observer's hooks (a row every ``record_every`` steps, at events and at the end; a
    snapshot every ``snapshot_every`` steps; a checkpoint due every ``checkpoint_every``
    steps and at the end)."""
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
                preconditioner=dyn.preconditioner,
            )
            y, h_used, h_next = result.y, result.h, result.h_next
        else:
            y, h_used, h_next, stiffness = _explicit_step(flow, layout, dyn, state, info, h_max)
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
    row = None
    if events or last or state.step % dyn.record_every == 0:
        row = _row(layout, state, new, h_used, events)
        observer.row(row)
    if dyn.snapshot_every and (state.step % dyn.snapshot_every == 0 or last):
        a, w, p, _, _ = layout.unpack(state.y)
        observer.snapshot(state.step, state.time, a.cpu().numpy(), w.cpu().numpy(), p.cpu().numpy())
    observer.step(state, new, rng, row, last or state.step % dyn.checkpoint_every == 0)
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


def _explicit_step(flow: ParticleFlow, layout: Layout, dyn: DynamicsConfig, state: FlowState, info: FieldValue, h_max: float):
    """One step of an explicit scheme from ``state``: ``(y_new, h_used, h_next, stiffness)``.

    Where the closed forms run (the fast engine, a CPU float64 state), the stages are numpy
    arrays (views of the tensors, no copies) and the field the closed-form one, so that one
    step costs its field evaluations plus a few microseconds of arithmetic; otherwise the
    integrator works on the tensors. The arithmetic is the same (:mod:`.integrators`).
    """
    tableau = TABLEAUS[dyn.integrator]
    f, y, k1 = flow, state.y, info.dy
    on_numpy = flow._takes_fast(y)
    if on_numpy:
        f, y, k1 = (lambda z: flow(torch.from_numpy(z)).numpy()), y.numpy(), k1.numpy()
    if dyn.adaptive:
        mask = _numpy_mask(layout) if on_numpy else layout.error_mask(y)
        result = adaptive_step(f, y, k1, state.h, tableau, dyn.rtol, dyn.atol, mask, h_max)
        y_new, h_used, h_next, stiffness = result.y, result.h, result.h_next, result.stiffness
    else:
        h_used, h_next, stiffness = min(dyn.step_size, h_max), dyn.step_size, None
        y_new, _ = rk_step(f, y, k1, h_used, tableau)
    return (torch.from_numpy(y_new) if on_numpy else y_new), h_used, h_next, stiffness


@functools.lru_cache(maxsize=None)
def _numpy_mask(layout: Layout) -> np.ndarray:
    """:meth:`Layout.error_mask` as a read-only numpy array (built once per layout)."""
    mask = layout.error_mask(torch.zeros(layout.size, dtype=torch.float64)).numpy()
    mask.flags.writeable = False
    return mask


def _host(y: torch.Tensor) -> np.ndarray:
    """``y`` as a numpy array: a view of a CPU tensor, a copy of another."""
    return y.detach().cpu().numpy()


def _row(layout: Layout, state: FlowState, info: FieldValue, h: float, events: list[str]) -> dict[str, Any]:
    """The trajectory row of ``state`` (keys :data:`~landscape.dynamics.trajectory.COLUMNS`)."""
    _, _, p, _, dissipated = layout.unpack(_host(state.y))
    q = p / p.sum()
    q = q[q > 0]
    entropy = -float(q @ np.log(q))
    return (
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
