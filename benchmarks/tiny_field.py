"""Benchmark of the tiny field (not a test): ``ParticleFlow.evaluate`` by the closed forms
(``engine = "fast"``) against the autograd reference, in one run. From the repository root::

    python -c "from benchmarks import tiny_field; tiny_field.main([])"      # [--rounds R] [--quick]

Problem: the docs/theory.md §9 erf teacher with ``k° = k = 2`` neurons in ``d = 3``, exact
Gaussian expectations, ``N = ∞``, ``M = 8`` particles near the teacher
(:func:`landscape.cases.near_teacher_measure`), fixed weights.

Every thread pool is pinned to one thread (:func:`benchmarks.pinning.pinned`: ``threadpoolctl`` for
BLAS/OpenMP, torch's and numba's own, after a warm-up call of the compiled field that loads numba's BLAS),
and times are CPU seconds of this process (``time.process_time``), so that a busy shared machine
distorts neither engine. The engines alternate round by round; each round times a batch of
calls (sized to about ``BATCH_SECONDS``) and reports the mean per call. Printed: per engine the
median and the min–max spread over rounds of the field evaluation and of one Jacobian-vector
product (``linearize(y).jvp``), their ratios, and the CPU time of one ``simulate`` step (rk4, four
field evaluations) beyond those evaluations: per round, the fast field's time per call and then a
run of :data:`SIM_STEPS` steps; the median over rounds of (run − evaluations × field) / steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.pinning import pinned
from landscape.cases import near_teacher_measure, orthogonal_teacher_landscape
from landscape.dynamics import simulate
from landscape.dynamics.flow import Layout, ParticleFlow
from landscape.dynamics.simulate import _initial_state

M, K, D = 8, 2, 3
#: CPU seconds one timed batch aims at.
BATCH_SECONDS = 0.05
#: steps of the timed ``simulate`` run.
SIM_STEPS = 400

clock = time.process_time


def per_call(fn, calls: int) -> float:
    """Mean CPU seconds of ``fn()`` over ``calls`` calls."""
    start = clock()
    for _ in range(calls):
        fn()
    return (clock() - start) / calls


def batch_size(fn) -> int:
    """Calls that take about :data:`BATCH_SECONDS` (after a warm-up call)."""
    fn()
    return max(1, round(BATCH_SECONDS / max(per_call(fn, 3), 1e-7)))


def alternate(named: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each ``named`` function, ``rounds`` times, the functions interleaved."""
    sizes = {name: batch_size(fn) for name, fn in named.items()}
    times: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(rounds):
        for name, fn in named.items():
            times[name].append(per_call(fn, sizes[name]))
    return times


def summary(label: str, times: dict[str, list[float]]) -> float:
    """Print the median and spread per engine (µs) and the ratio reference/fast of the medians; returns the fast median."""
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{label:<12} {name:<10} median {med[name] * 1e6:>10.1f} µs   min–max {min(t) * 1e6:.1f}–{max(t) * 1e6:.1f} µs")
    print(f"{label:<12} ratio reference / fast = {med['reference'] / med['fast']:.1f}×")
    return med["fast"]


def main(argv: list[str]) -> None:
    """Time the tiny field, its JVP and one simulate step's overhead; print the table."""
    parser = argparse.ArgumentParser(prog="benchmarks.tiny_field", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21, help="alternating rounds per measurement (default 21)")
    parser.add_argument("--quick", action="store_true", help="5 rounds")
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else args.rounds
    if rounds < 1:
        parser.error(f"--rounds must be at least 1, got {rounds}")
    landscape = orthogonal_teacher_landscape(neurons=K, dim=D)
    measure = near_teacher_measure(M, K, D)
    layout = Layout(M, K, D, False)
    y = _initial_state(landscape, layout, measure)
    flows = {engine: ParticleFlow(landscape, layout, engine=engine) for engine in ("fast", "reference")}
    assert flows["fast"].engine == "fast", flows["fast"].fallback
    v = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(0))
    with pinned(lambda: flows["fast"].linearize(y).jvp(v)):
        print(f"tiny field: erf, exact, N = ∞, M = {M}, d = {D}, k = {K}; one thread; CPU time per call")
        summary("evaluate", alternate({name: (lambda f=f: f.evaluate(y)) for name, f in flows.items()}, rounds))
        jvps = {name: f.linearize(y).jvp for name, f in flows.items()}
        summary("jvp", alternate({name: (lambda j=j: j(v)) for name, j in jvps.items()}, rounds))
        settings = {"steps": SIM_STEPS, "step_size": 0.01, "integrator": "rk4", "checkpoint_every": SIM_STEPS}
        simulate(landscape, measure, {**settings, "steps": 2})
        overheads, totals = [], []
        for _ in range(rounds):  # each round: the field alone, then the run, so that both see the same load
            t_round = per_call(lambda: flows["fast"].evaluate(y), batch_size(lambda: flows["fast"].evaluate(y)))
            start = clock()
            run = simulate(landscape, measure, settings)
            totals.append((clock() - start) / SIM_STEPS)
            overheads.append(totals[-1] - run.result.evaluations / SIM_STEPS * t_round)
    overhead = statistics.median(overheads)
    print(
        f"simulate     fast rk4: {statistics.median(totals) * 1e6:.1f} µs CPU per step, {run.result.evaluations / SIM_STEPS:.2f} "
        f"evaluations per step; beyond them {overhead * 1e6:.1f} µs per step (median of {rounds}, "
        f"min–max {min(overheads) * 1e6:.1f}–{max(overheads) * 1e6:.1f}; goal ≤ 100)"
    )
