r"""Many independent runs of the particle flow as one batched computation.

:func:`simulate_ensemble` integrates ``B`` runs of the same shape (seeds, initial measures, or
problems with the same ``M``, ``k``, ``d``) in lock step: the states are stacked into one
``(B, n)`` numpy array, every stage of the Runge–Kutta pair evaluates all running members at once
(:class:`BatchField`, called on a tensor view of it), the stages are combined by the one
arithmetic of :mod:`.integrators`, and the step-size controller runs vectorised over the
members — each with its own step size, its own accept/reject decisions, its own end (completed,
or stopped because its state became invalid) and its own recorded rows. A claim's seeds or a
user's sweep thus pay the Python overhead of one run, not ``B``.

Each member follows exactly the rules of :func:`~landscape.dynamics.simulate.simulate`
(same controller, same stop conditions, same trajectory columns); only the order of the
floating-point reductions (the error norm, the entropy) may differ, so a member agrees with its
single run to rounding and takes the same steps (``tests/dynamics/test_dynamics_ensemble.py``).

Supported: the explicit schemes (fixed step ``euler``/``heun``/``rk4``, adaptive ``rk23``/
``dopri5``), fixed weights or the deterministic WFR flow, any η. Perturbations, stochastic
birth–death and ``rosenbrock23`` need per-run randomness or Krylov solves: use
:func:`~landscape.dynamics.simulate.simulate` for those (a ``ValueError`` says so).
"""

from __future__ import annotations

import math
import time as wallclock
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from ..landscape import AttentionLandscape
from ..model.measure import ParticleMeasure
from .config import DynamicsConfig, parse_dynamics
from .fast_field import FastField
from .flow import FieldValue, Layout, ParticleFlow
from .integrators import H_MIN, TABLEAUS, Tableau, _rk_stages
from .simulate import RunResult, _initial_state
from .trajectory import COLUMNS, Trajectory

__all__ = ["BatchField", "BatchValue", "ClosedFormBatch", "FlowBatch", "VmapBatch", "simulate_ensemble"]

#: the trajectory columns an ensemble records (:data:`~landscape.dynamics.trajectory.COLUMNS` but ``events``).
NUMERIC_COLUMNS = tuple(name for name in COLUMNS if name != "events")
#: the diagnostics of a :class:`BatchValue`, arrays of shape (B,).
_STATS = ("energy", "loss", "grad_norm", "sigma_min", "sigma_max")
#: why a member stops, by the problem its new state has.
STOPS = {
    "nonfinite": "the state or the field is no longer finite",
    "singular": "Σ_µµ became singular",
}


@dataclass(frozen=True)
class BatchValue:
    """The field of every running member with the diagnostics its rows need.

    Attributes:
        dy: tensor of shape (B, n), ``f(y_b)`` (zeros for members not evaluated).
        energy, loss, grad_norm, sigma_min, sigma_max: arrays of shape (B,) (NaN where not evaluated).
        problem: array (B,) of str: ``""`` where the state is valid, else ``"nonfinite"`` or
            ``"singular"`` (the stop statuses of :func:`~landscape.dynamics.simulate.simulate`).
    """

    dy: torch.Tensor
    energy: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    sigma_min: np.ndarray
    sigma_max: np.ndarray
    problem: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """bool array (B,): the members whose state is valid."""
        return self.problem == ""


class BatchField(Protocol):
    """``(Y, members) ↦ BatchValue``: the field at the rows ``members`` of ``Y`` (shape (B, n))."""

    layout: Layout
    evaluations: int

    def __call__(self, y: torch.Tensor, members: np.ndarray) -> BatchValue: ...


class FlowBatch:
    """A :class:`BatchField` made of one :class:`ParticleFlow` per member (the reference path).

    Args:
        flows: one flow per member, all with the same :class:`Layout`.
    """

    def __init__(self, flows: Sequence[ParticleFlow]) -> None:
        layouts = {flow.layout for flow in flows}
        if len(layouts) != 1:
            raise ValueError(f"an ensemble needs members of one shape, got layouts {sorted(map(str, layouts))}.")
        self.flows = list(flows)
        self.layout = layouts.pop()
        self.evaluations = 0

    def __call__(self, y: torch.Tensor, members: np.ndarray) -> BatchValue:
        b = y.shape[0]
        dy = torch.zeros_like(y)
        stats = {name: np.full(b, np.nan) for name in ("energy", "loss", "grad_norm", "sigma_min", "sigma_max")}
        problem = np.full(b, "nonfinite", dtype=object)
        self.evaluations += 1
        for i in np.flatnonzero(members):
            try:
                value: FieldValue = self.flows[i].evaluate(y[i])
            except torch.linalg.LinAlgError:
                problem[i] = "singular"
                continue
            dy[i] = value.dy
            for name in stats:
                stats[name][i] = getattr(value, name)
            if not value.finite:
                continue
            singular = not value.sigma_min > self.flows[i].landscape.singular_rtol * value.sigma_max
            problem[i] = "singular" if singular else ""
        return BatchValue(dy=dy, problem=problem, **stats)


class VmapBatch:
    """A :class:`BatchField` for members of one problem: the flow's energy gradient vectorised by
    ``torch.func.vmap`` (one pass of tensor operations for all members, any activation or backend
    that :mod:`torch.func` can transform).

    A batch in which some member's ``Σ_µµ`` cannot be solved is evaluated member by member
    (:class:`FlowBatch`), so that member alone stops.

    Args:
        flow: the flow of the shared problem (its :class:`Layout` is every member's).
        members: B, the number of members.
    """

    def __init__(self, flow: ParticleFlow, members: int) -> None:
        self.flow = flow
        self.layout = flow.layout
        self.evaluations = 0
        self._fallback = FlowBatch([flow] * members)
        self._batched = torch.func.vmap(self._member)

    def _member(self, y: torch.Tensor):
        """One member's ``(f(y), E, L_N, ‖∇δE/δµ‖², Σ_µµ)`` (vmapped over the first axis)."""
        flow, landscape = self.flow, self.flow.landscape
        a, w, p, gamma, _ = self.layout.unpack(y)

        def energy(*leaves):
            moments = landscape.moments(*leaves[:3])
            loss = landscape.loss_from_moments(*moments)
            e = loss if gamma is None else landscape.loss_with_gamma_from_moments(leaves[3], *moments)
            return e, (e, loss, moments[0])

        leaves = (a, w, p) if gamma is None else (a, w, p, gamma)
        grads, (e, loss, sigma_mm) = torch.func.grad(energy, argnums=tuple(range(len(leaves))), has_aux=True)(*leaves)
        dy, v, _ = flow._assemble(p, grads)
        return dy, e, loss, (p * (v * v).sum(-1)).sum(), sigma_mm

    def __call__(self, y: torch.Tensor, members: np.ndarray) -> BatchValue:
        self.evaluations += 1
        rows = torch.as_tensor(np.flatnonzero(members), device=y.device)
        try:
            dy_m, e, loss, grad_sq, sigma_mm = self._batched(y[rows])
            eig = torch.linalg.eigvalsh(sigma_mm)
        except torch.linalg.LinAlgError:
            return self._fallback(y, members)
        b = y.shape[0]
        dy = torch.zeros_like(y)
        dy[rows] = dy_m
        stats = {name: np.full(b, np.nan) for name in ("energy", "loss", "grad_norm", "sigma_min", "sigma_max")}
        picked = {
            "energy": e, "loss": loss, "grad_norm": torch.sqrt(torch.clamp(grad_sq, min=0.0)),
            "sigma_min": eig[:, 0], "sigma_max": eig[:, -1],
        }
        index = rows.cpu().numpy()
        for name, values in picked.items():
            stats[name][index] = values.detach().cpu().numpy()
        finite = torch.isfinite(dy_m).all(dim=1).cpu().numpy() & np.all([np.isfinite(stats[n][index]) for n in stats], axis=0)
        singular = ~(stats["sigma_min"][index] > self.flow.landscape.singular_rtol * stats["sigma_max"][index])
        problem = np.full(b, "nonfinite", dtype=object)
        problem[index] = np.where(~finite, "nonfinite", np.where(singular, "singular", ""))
        return BatchValue(dy=dy, problem=problem, **stats)


class ClosedFormBatch:
    """A :class:`BatchField` for members of one problem where the fast engine applies: the
    closed-form field (:mod:`.fast_field`) of every member in one compiled loop.

    Args:
        landscape: the shared problem (:func:`~landscape.dynamics.fast_field.unsupported` is None).
        layout: the members' state layout; timescale_ratio: η; wfr_rate: α.
    """

    def __init__(self, landscape: AttentionLandscape, layout: Layout, timescale_ratio: float, wfr_rate: float) -> None:
        self.layout = layout
        self.evaluations = 0
        self._field = FastField(landscape, layout.m, layout.k, layout.d, layout.gamma, timescale_ratio, wfr_rate)

    def __call__(self, y: torch.Tensor, members: np.ndarray) -> BatchValue:
        self.evaluations += 1
        dy, stats, problem = self._field.evaluate_batch(y.detach().numpy(), members)
        energy, loss, grad_sq, sigma_min, sigma_max = stats.T
        return BatchValue(torch.from_numpy(dy), energy, loss, np.sqrt(np.maximum(grad_sq, 0.0)), sigma_min, sigma_max, _PROBLEMS[problem])


def _stats(value: BatchValue) -> np.ndarray:
    """The diagnostics :data:`_STATS` of ``value`` as one array (B, 5)."""
    return np.column_stack([getattr(value, name) for name in _STATS])


#: ``BatchValue.problem`` by code: 0 valid, 1 non-finite, 2 singular.
_PROBLEMS = np.array(["", "nonfinite", "singular"], dtype=object)


def simulate_ensemble(
    landscapes: AttentionLandscape | Sequence[AttentionLandscape],
    measures: Sequence[ParticleMeasure],
    settings: DynamicsConfig | dict[str, Any],
    field: BatchField | None = None,
) -> list[Trajectory]:
    """Run the flow from every measure in ``measures``, batched, and return one trajectory each.

    Args:
        landscapes: one problem for all members, or one per member (same ``d`` and ``k``).
        measures: B initial measures of one shape, ``a`` (M, k), ``w`` (M, d), ``p`` (M,).
        settings: the ``[dynamics]`` settings shared by all members (a :class:`DynamicsConfig`
            or a table).
        field: the batched field (default: :class:`ClosedFormBatch` where the fast engine
            applies to a shared problem, :class:`VmapBatch` for another shared problem,
            :class:`FlowBatch` when the members' problems differ).

    Returns:
        B trajectories with the columns of :func:`~landscape.dynamics.simulate.simulate`
        (``events`` empty), each with its :class:`RunResult` and, when completed, ``final``.

    Raises:
        ValueError: no members, members of different shapes, or a setting the ensemble does not run.
    """
    started = wallclock.perf_counter()
    dyn = settings if isinstance(settings, DynamicsConfig) else parse_dynamics(settings)
    _check_supported(dyn)
    if not measures:
        raise ValueError("an ensemble needs at least one measure.")
    problems = [landscapes] * len(measures) if isinstance(landscapes, AttentionLandscape) else list(landscapes)
    if len(problems) != len(measures):
        raise ValueError(f"{len(problems)} landscapes for {len(measures)} measures.")
    gamma = not math.isinf(dyn.timescale_ratio)
    layouts = {Layout(m.size, m.features, lp.input_dim, gamma) for m, lp in zip(measures, problems, strict=True)}
    if len(layouts) != 1:
        raise ValueError("every member of an ensemble needs the same M, k and d.")
    layout = layouts.pop()
    rate = dyn.birth_death.rate if dyn.birth_death.kind == "wfr" else 0.0
    if field is None:
        field = _default_field(problems, layout, dyn, rate)
    y = torch.stack([_initial_state(lp, layout, m) for lp, m in zip(problems, measures, strict=True)])
    return _Lockstep(field, dyn, y, started).run()


def _default_field(problems: list[AttentionLandscape], layout: Layout, dyn: DynamicsConfig, rate: float) -> BatchField:
    """The closed forms in one compiled loop where they apply to a shared problem, else one
    vmapped autograd pass for a shared problem, else the members' flows one by one."""
    if any(lp is not problems[0] for lp in problems):
        return FlowBatch([ParticleFlow(lp, layout, dyn.timescale_ratio, rate, dyn.engine) for lp in problems])
    flow = ParticleFlow(problems[0], layout, dyn.timescale_ratio, rate, dyn.engine)
    if flow.engine == "fast" and problems[0].device.type == "cpu":
        return ClosedFormBatch(problems[0], layout, dyn.timescale_ratio, rate)
    return VmapBatch(flow, len(problems))


def _check_supported(dyn: DynamicsConfig) -> None:
    if dyn.integrator == "rosenbrock23":
        raise ValueError("simulate_ensemble runs explicit schemes only; use simulate for integrator = \"rosenbrock23\".")
    if dyn.perturbation.kind != "none":
        raise ValueError("simulate_ensemble runs no perturbations; use simulate for [dynamics.perturbation].")
    if dyn.birth_death.kind == "stochastic":
        raise ValueError("simulate_ensemble runs no stochastic birth–death; use simulate for kind = \"stochastic\".")


class _Lockstep:
    """The vectorised driver: per-member time, step, step size, offset, status and rows.

    The bookkeeping is numpy, vectorised over the members: the states ``y`` (B, n), the first
    stages ``dy`` (B, n) and the diagnostics of the last accepted states (B,) are host arrays
    (the field is called on tensors, views of them on the CPU), and the rows of an attempt are
    logged as raw arrays, formed into columns and split into trajectories once at the end.
    """

    def __init__(self, field: BatchField, dyn: DynamicsConfig, y: torch.Tensor, started: float) -> None:
        self.field, self.dyn, self.started = field, dyn, started
        self.device = y.device
        self.y = y.detach().cpu().numpy()
        self.layout = field.layout
        self.tableau: Tableau = TABLEAUS[dyn.integrator]
        b = self.y.shape[0]
        self.step = np.zeros(b, dtype=np.int64)
        self.time = np.zeros(b)
        self.h = np.full(b, dyn.step_size)
        self.status = np.array(["running"] * b, dtype=object)
        self.message = [""] * b
        self.mask = self.layout.error_mask(y[0]).cpu().numpy()
        tab = self.tableau
        # first same as last: the last stage is f(y_new), the accepted states' fields are known
        self.fsal = tuple(tab.a[-1]) == tuple(tab.b[: len(tab.a[-1])]) and tab.b[-1] == 0.0
        start = self.layout.m * (self.layout.k + self.layout.d)
        self.p_slice = slice(start, start + self.layout.m)
        self.log: list[tuple[np.ndarray, ...]] = []
        value, self.dy = self._evaluate(self.y, np.ones(b, dtype=bool))
        bad = ~value.valid
        if bad.any():
            raise ValueError(f"members {np.flatnonzero(bad).tolist()} cannot start a run (non-finite or singular Σ_µµ).")
        self.stats = _stats(value)
        self.offset = value.energy.copy()
        self._record(np.ones(b, dtype=bool), np.zeros(b))

    def run(self) -> list[Trajectory]:
        while True:
            running = self.status == "running"
            running &= ~self._done()
            self.status[(self.status == "running") & ~running] = "completed"
            if not running.any():
                break
            self._attempt(running)
        return self._trajectories()

    def _evaluate(self, y: np.ndarray, members: np.ndarray) -> tuple[BatchValue, np.ndarray]:
        """The field at the rows ``members`` of ``y`` (B, n): its :class:`BatchValue` and ``dy`` as an array (B, n)."""
        value = self.field(torch.from_numpy(y) if self.device.type == "cpu" else torch.as_tensor(y, device=self.device), members)
        return value, value.dy.detach().cpu().numpy()

    def _done(self) -> np.ndarray:
        if self.dyn.steps is not None:
            return self.step >= self.dyn.steps
        return self.time >= self.dyn.time * (1.0 - 1e-14)

    def _attempt(self, members: np.ndarray) -> None:
        """One trial step of every running member; accepted ones advance."""
        dyn, tab = self.dyn, self.tableau
        h_max = np.full_like(self.h, math.inf) if dyn.time is None else dyn.time - self.time
        h = np.minimum(self.h if tab.b_low is not None else dyn.step_size, h_max)
        underflow = members & (h < H_MIN)
        self._stop(underflow, "step_size_underflow", lambda i: f"adaptive step size fell to {h[i]:.3e} (below {H_MIN:.1e}).")
        members = members & ~underflow
        last: list[BatchValue] = []

        def f(point: np.ndarray) -> np.ndarray:
            value, dy = self._evaluate(point, members)
            last[:] = [value]
            return dy

        step = np.where(members, h, 0.0).astype(self.y.dtype)[:, None]  # (B, 1), 0 for members not stepping
        y_new, error, stages = _rk_stages(f, self.y, self.dy, step, tab)
        accepted = members.copy()
        factor = np.ones_like(h)
        if error is not None:
            norm = self._error_norm(error, y_new)
            accepted &= norm <= 1.0
            factor = _step_factors(norm, -1.0 / tab.order)
            rejected = members & ~accepted
            self.h[rejected] = h[rejected] * factor[rejected]
        if not accepted.any():
            return
        value, dy = (last[0], stages[-1]) if error is not None and self.fsal else self._evaluate(y_new, accepted)
        self._accept(accepted, y_new, value, dy, h, factor)

    def _error_norm(self, error: np.ndarray, y_new: np.ndarray) -> np.ndarray:
        """:func:`~landscape.dynamics.integrators.error_norm` of every member, shape (B,) (``inf`` where not finite)."""
        with np.errstate(over="ignore", invalid="ignore"):
            scale = np.abs(self.y[:, self.mask])
            np.maximum(scale, np.abs(y_new[:, self.mask]), out=scale)
            scale *= self.dyn.rtol
            scale += self.dyn.atol
            ratio = error[:, self.mask]
            ratio /= scale
            norm = np.sqrt(np.einsum("ij,ij->i", ratio, ratio) / ratio.shape[1])
        norm[~np.isfinite(norm)] = math.inf
        return norm

    def _accept(self, accepted: np.ndarray, y_new: np.ndarray, value: BatchValue, dy: np.ndarray, h: np.ndarray, factor: np.ndarray) -> None:
        """Advance the accepted members (new states ``y_new`` with fields ``dy``, (B, n)), stop the invalid ones, record rows."""
        valid = accepted & value.valid
        if (accepted & ~valid).any():
            for problem, why in STOPS.items():
                self._stop(accepted & (value.problem == problem), problem, lambda i, why=why: why)
        negative = valid & (y_new[:, self.p_slice] <= 0).any(axis=1)
        self._stop(negative, "negative_weight", lambda i: "a weight p_i reached zero or below; take a smaller step_size")
        good = valid & ~negative
        np.copyto(self.y, y_new, where=good[:, None])
        np.copyto(self.dy, dy, where=good[:, None])
        np.copyto(self.stats, _stats(value), where=good[:, None])
        self.step += good
        np.add(self.time, h, out=self.time, where=good)
        np.copyto(self.h, h * factor if self.tableau.b_low is not None else self.dyn.step_size, where=good)
        self._record(good & (self._done() | (self.step % self.dyn.record_every == 0)), h)

    def _stop(self, members: np.ndarray, status: str, why) -> None:
        for i in np.flatnonzero(members):
            self.status[i] = status
            self.message[i] = f"stopped at step {self.step[i] + 1} (t = {self.time[i]:.6g}): {why(i)}"

    def _record(self, members: np.ndarray, h: np.ndarray) -> None:
        """Log a row of each member in ``members``, with step sizes ``h`` (B,): the raw values
        (member, step, time, step size, ``D``, diagnostics, weights) from which
        :meth:`_trajectories` forms the :data:`NUMERIC_COLUMNS` of all rows at once."""
        index = np.flatnonzero(members)
        if index.size:
            y = self.y[index]
            self.log.append((index, self.step[index], self.time[index], h[index], y[:, -1], self.stats[index], y[:, self.p_slice]))

    def _trajectories(self) -> list[Trajectory]:
        """Every member's :class:`Trajectory`, from the logged rows (in the order they were logged)."""
        index, step, time, h, dissipated, stats, p = (np.concatenate(part) for part in zip(*self.log, strict=True))
        energy, loss, grad_norm, sigma_min, sigma_max = stats.T
        q = p / p.sum(axis=1, keepdims=True)
        entropy = -np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0).sum(axis=1)
        table = np.stack([
            step.astype(float), time, loss, energy, grad_norm, sigma_min, sigma_max / sigma_min, entropy,
            energy - self.offset[index] + dissipated, h,
        ], axis=1)
        order = np.argsort(index, kind="stable")
        ends = np.cumsum(np.bincount(index, minlength=self.y.shape[0]))
        per_member = np.split(table[order], ends[:-1])
        return [self._trajectory(i, rows) for i, rows in enumerate(per_member)]

    def _trajectory(self, i: int, rows: np.ndarray) -> Trajectory:
        """Member ``i``'s trajectory from its rows (R, columns)."""
        columns = dict(zip(NUMERIC_COLUMNS, rows.T, strict=True))
        status = str(self.status[i])
        loss, grad_norm = float(columns["loss"][-1]), float(columns["grad_norm"][-1])
        message = self.message[i] or f"completed {self.step[i]} steps to t = {self.time[i]:.6g}, loss {loss:.6g}"
        result = RunResult(
            status, message, int(self.step[i]), float(self.time[i]), loss, grad_norm,
            self.field.evaluations, wallclock.perf_counter() - self.started,
        )
        final = None
        if status == "completed":
            a, w, p, gamma, _ = self.layout.unpack(self.y[i])
            final = {"a": a.copy(), "w": w.copy(), "p": p / p.sum()}
            if gamma is not None:
                final["gamma"] = gamma.copy()
        return Trajectory(columns, [""] * len(rows), result, final)
def _step_factors(norm: np.ndarray, exponent: float) -> np.ndarray:
    """:func:`~landscape.dynamics.integrators.step_factor` of every member: ``clip(0.9·norm^exponent, 0.2, 5)``
    (5 at ``norm = 0``, 0.2 at ``norm = inf``); ``norm`` of shape (B,)."""
    with np.errstate(divide="ignore", over="ignore"):
        factor = np.clip(0.9 * norm**exponent, 0.2, 5.0)
    return np.where(norm == 0.0, 5.0, np.where(np.isfinite(norm), factor, 0.2))
