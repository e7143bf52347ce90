"""An ensemble of tiny runs against one run and against the same runs one by one.

Run from the repository root::

    python -m benchmarks ensemble [--members 64] [--repeats 5]

The problem: the §9 erf teacher (k° = 2, d = 3), M = 8 particles near the teacher, ``rk23`` to
t = 1 at rtol 1e-6. Members differ by the seed of their initial measure, so they take
different numbers of steps; the ensemble runs in lock step until its slowest member ends.
Timed, alternating in one process with every thread pool pinned to one thread
(:func:`benchmarks.pinning.pinned`, after a warm-up of the compiled paths): one run of the slowest member
(:func:`~landscape.dynamics.simulate`), the ensemble (:func:`~landscape.dynamics.simulate_ensemble`)
and, once, all members one by one; then the ensemble's batched field alone (CPU seconds inside
its calls, median over the repeats). Reported: median and min–max of CPU seconds
(``time.process_time``), and the ratios; the goal of issue 14 is ensemble ≤ 4 × one run.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from benchmarks.pinning import pinned
from landscape.cases import near_teacher_measure, orthogonal_teacher_landscape
from landscape.dynamics import simulate, simulate_ensemble
from landscape.dynamics.ensemble import ClosedFormBatch
from landscape.dynamics.flow import Layout

SETTINGS = {"time": 1.0, "step_size": 0.05, "integrator": "rk23", "rtol": 1e-6, "atol": 1e-9}


def _timed(fn) -> tuple[float, object]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


class _TimedField:
    """A :class:`~landscape.dynamics.ensemble.BatchField` that adds up the CPU seconds of ``inner``'s calls."""

    def __init__(self, inner: ClosedFormBatch) -> None:
        self.inner, self.layout, self.seconds = inner, inner.layout, 0.0

    @property
    def evaluations(self) -> int:
        return self.inner.evaluations

    def __call__(self, y, members):
        start = time.process_time()
        out = self.inner(y, members)
        self.seconds += time.process_time() - start
        return out


def main(argv: list[str]) -> None:
    """Time and print the table (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.members < 1 or args.repeats < 1:
        parser.error("--members and --repeats must be at least 1")
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    measures = [near_teacher_measure(8, 2, 3, seed=seed) for seed in range(args.members)]
    with pinned(lambda: simulate(landscape, measures[0], SETTINGS)):  # the single run's compiled field loads numba's BLAS
        runs = simulate_ensemble(landscape, measures, SETTINGS)  # warm-up of the batch
        slowest = max(range(args.members), key=lambda i: runs[i].result.steps)
        one, many = [], []
        for _ in range(args.repeats):
            one.append(_timed(lambda: simulate(landscape, measures[slowest], SETTINGS))[0])
            many.append(_timed(lambda: simulate_ensemble(landscape, measures, SETTINGS))[0])
        serial, singles = _timed(lambda: [simulate(landscape, m, SETTINGS) for m in measures])
        fields = []
        for _ in range(args.repeats):  # the batched closed-form field's share of the ensemble (the default field here)
            fields.append(_TimedField(ClosedFormBatch(landscape, Layout(8, 2, 3, False), math.inf, 0.0)))
            simulate_ensemble(landscape, measures, SETTINGS, field=fields[-1])
    field = statistics.median(f.seconds for f in fields)
    worst = max(abs(float(r["loss"][-1] - s["loss"][-1])) for r, s in zip(runs, singles, strict=True))
    steps = [r.result.steps for r in runs]
    print(f"ensemble of {args.members} tiny runs (erf, M = 8, d = 3, k = 2, rk23 to t = 1; steps {min(steps)}–{max(steps)})")
    print(f"  one run (slowest member)   {statistics.median(one) * 1e3:9.1f} ms  [{min(one) * 1e3:.1f}–{max(one) * 1e3:.1f}]")
    print(f"  ensemble                   {statistics.median(many) * 1e3:9.1f} ms  [{min(many) * 1e3:.1f}–{max(many) * 1e3:.1f}]")
    print(f"  of which the batched field {field * 1e3:9.1f} ms  (alone {field / statistics.median(one):.2f} × one run)")
    print(f"  members one by one         {serial * 1e3:9.1f} ms")
    print(f"  ensemble / one run         {statistics.median(many) / statistics.median(one):9.2f}   (goal ≤ 4)")
    print(f"  one by one / ensemble      {serial / statistics.median(many):9.2f}")
    print(f"  largest final-loss difference, ensemble vs single runs: {worst:.1e}")
