"""The sampled paper scenario's field and Jacobian-vector product: the sampled engine against the reference path.

Run from the repository root::

    python -m benchmarks sampled-jvp [--repeats 5] [--samples 20000] [--problem landscape/examples/paper_sampled.toml]

Builds the problem of ``landscape/examples/paper_sampled.toml`` (d = 20, k = 5, 500 sigmoid neurons,
N = 1000, Monte Carlo expectations; ``--samples`` overrides its sample size) at its initial measure and
times one field evaluation, one linearisation (what ``rosenbrock23`` does once per step) and one JVP
(what each GMRES iteration costs) on two paths, alternated so that machine load hits both alike:
``fast`` (:mod:`landscape.dynamics.sampled_field`, GEMMs on the sample) and ``reference`` (autograd).
Every pool is pinned to one thread and times are CPU seconds of this process (``time.process_time``).
Prints the median and min–max per path, the ratio reference/fast and the relative differences of the
two paths' field and product (rounding times the conditioning of ``Σ_µµ``: ≲ 1e-11).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numba
import torch
from threadpoolctl import threadpool_limits

from landscape.dynamics import initial_measure, parse_init
from landscape.dynamics.flow import Layout, ParticleFlow
from landscape.io.files import read_toml
from landscape.io.problem import parse_problem

PAPER_SAMPLED = Path(__file__).resolve().parent.parent / "landscape" / "examples" / "paper_sampled.toml"


def _timed(fn) -> tuple[float, object]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def main(argv: list[str]) -> None:
    """Parse ``argv`` and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks sampled-jvp", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timings per path (default 5)")
    parser.add_argument("--samples", type=int, default=None, help="Monte Carlo inputs (default: the problem file's)")
    parser.add_argument("--problem", type=Path, default=PAPER_SAMPLED)
    args = parser.parse_args(argv)
    raw = read_toml(args.problem, "problem")
    if args.samples is not None:
        raw["expectation"] = {**raw["expectation"], "samples": args.samples}
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    with threadpool_limits(1):
        spec = parse_problem(raw, args.problem.parent)
        landscape = spec.landscape()
        measure = initial_measure(parse_init(raw["init"], args.problem.parent), landscape, spec.features)
        layout = Layout(measure.size, measure.features, measure.dim, False)
        y = layout.pack(*measure.tensors(), None, 0.0)
        v = torch.randn(layout.size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        flows = {name: ParticleFlow(landscape, layout, engine=name) for name in ("fast", "reference")}
        assert flows["fast"].engine == "sampled", flows["fast"].fallback
        times: dict[str, dict[str, list[float]]] = {name: {"evaluate": [], "linearize": [], "jvp": []} for name in flows}
        products = {}
        for flow in flows.values():  # warm-up: first calls set up autograd and allocator state
            flow.linearize(y).jvp(v)
        for _ in range(args.repeats):
            for name, flow in flows.items():
                times[name]["evaluate"].append(_timed(lambda flow=flow: flow.evaluate(y))[0])
                seconds, lin = _timed(lambda flow=flow: flow.linearize(y))
                times[name]["linearize"].append(seconds)
                seconds, products[name] = _timed(lambda lin=lin: lin.jvp(v))
                times[name]["jvp"].append(seconds)
                products[name + "-field"] = lin.value.dy
    print(f"sampled paper scenario: S = {landscape.expectation.samples}, M = {layout.m}, d = {layout.d}, k = {layout.k}, "
          f"N = {landscape.prompt_length}; CPU seconds, {args.repeats} repeats")
    for what in ("evaluate", "linearize", "jvp"):
        fast, ref = (statistics.median(times[n][what]) for n in ("fast", "reference"))
        spans = {n: f"[{min(times[n][what]):.3f}, {max(times[n][what]):.3f}]" for n in flows}
        print(f"{what:10s} fast {fast:.3f} {spans['fast']}  reference {ref:.3f} {spans['reference']}  reference/fast {ref / fast:.2f}")
    for what in ("-field", ""):
        a, b = products["fast" + what], products["reference" + what]
        print(f"relative difference of the {'field' if what else 'JVP'}: {float((a - b).abs().max() / b.abs().max()):.1e}")
