"""The paper scenario's field and Jacobian-vector product: the fast engine against the reference path.

Run from the repository root::

    python -m benchmarks.paper_jvp [--repeats 7] [--problem landscape/examples/paper.toml]

Builds the problem of ``landscape/examples/paper.toml`` (d = 20, k = 5, 500 sigmoid
neurons, Mehler order 32) at its initial measure, linearises the particle flow there
(``ParticleFlow.linearize``, what ``rosenbrock23`` does once per step) and times one field
evaluation, one linearisation and one JVP (what each GMRES iteration costs) on three paths,
alternating them so that machine load hits all alike: ``fast``, the default engine (the
closed-form series field of :mod:`landscape.dynamics.fast_field` and
:mod:`landscape.model.series_derivatives`); ``fused``, the autograd engine
(``engine="reference"``) with the fused numba series (:mod:`landscape.model.fused_series`);
``reference``, the autograd engine inside ``reference_kernels()`` (the torch series). A last
row times the series alone: a Hessian-vector product (reverse over reverse) of ``Σ κ²`` for
``κ = mehler_series(ρ, α, β)`` at the paper's sizes (M × M, order T, random ρ and
coefficients), fused against torch. Every thread pool is pinned to one thread
(``threadpool_limits(1)``, torch and numba), and times are CPU seconds of this process
(``time.process_time``), so that a busy shared machine does not bend the ratios. Prints median
and min–max times per path, the ratio fast/reference (and fused/reference), and the relative differences of the
paths' products (rounding: ≲ 1e-12).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import numba
import torch
from threadpoolctl import threadpool_limits

from landscape.dynamics import initial_measure, parse_init
from landscape.dynamics.flow import Layout, ParticleFlow
from landscape.io.problem import load_problem
from landscape.model.fused_series import reference_kernels
from landscape.model.kernels import mehler_series

PAPER = Path(__file__).resolve().parent.parent / "landscape" / "examples" / "paper.toml"


def _paper_flows(problem: Path) -> tuple[ParticleFlow, ParticleFlow, torch.Tensor, int]:
    """The fast and reference flows of ``problem``, its initial state (shape (state size,)) and its Mehler order."""
    spec = load_problem(problem)
    landscape = spec.landscape()
    measure = initial_measure(parse_init(spec.tables.get("init"), problem.parent), landscape, spec.features)
    layout = Layout(measure.size, spec.features, landscape.input_dim, gamma=False)
    a, w, p = measure.tensors()
    fast, reference = ParticleFlow(landscape, layout), ParticleFlow(landscape, layout, engine="reference")
    return fast, reference, layout.pack(a, w, p, None, 0.0), spec.quadrature.order


def _series_hvp(m: int, order: int):
    """A closure: one reverse-over-reverse HVP of ``Σ κ²`` for a random M × M series of the given order."""
    gen = torch.Generator().manual_seed(0)
    decay = 0.7 ** torch.arange(order + 1, dtype=torch.float64)
    leaves = [
        (2.0 * torch.rand(m, m, generator=gen, dtype=torch.float64) - 1.0).requires_grad_(True),
        (torch.randn(m, order + 1, generator=gen, dtype=torch.float64) * decay).requires_grad_(True),
        (torch.randn(m, order + 1, generator=gen, dtype=torch.float64) * decay).requires_grad_(True),
    ]
    vs = [torch.cos(torch.arange(t.numel(), dtype=t.dtype)).reshape(t.shape) for t in leaves]

    def hvp() -> list[torch.Tensor]:
        kappa = mehler_series(*leaves)
        grads = torch.autograd.grad((kappa * kappa).sum(), leaves, create_graph=True)
        return list(torch.autograd.grad(grads, leaves, vs))

    return hvp


def _timed(fn) -> tuple[float, object]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def _summary(name: str, times: dict[str, list[float]]) -> None:
    """One line: each path's median [min–max] and every path's ratio to the reference."""
    ref = statistics.median(times["reference"])
    parts = [f"{path} {statistics.median(t) * 1e3:8.1f} ms [{min(t) * 1e3:.1f}–{max(t) * 1e3:.1f}]" for path, t in times.items()]
    ratios = [f"{path}/reference {ref / statistics.median(t):5.2f}×" for path, t in times.items() if path != "reference"]
    print(f"  {name:<14} " + "   ".join(parts) + "   " + ", ".join(ratios), flush=True)


def main(argv: list[str]) -> None:
    """Time the paper field and JVP on both paths (options: ``--repeats``, ``--problem``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper_jvp", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per path (default 7)")
    parser.add_argument("--problem", type=Path, default=PAPER, help="problem file (default: the paper's)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        fast, reference, y, order = _paper_flows(args.problem)
    except ValueError as err:
        parser.error(str(err))
    if fast.engine != "fast":
        parser.error(f"the fast engine does not apply to {args.problem.name}: {fast.fallback}")
    paths = {"fast": (fast, contextlib.nullcontext), "fused": (reference, contextlib.nullcontext), "reference": (reference, reference_kernels)}
    rows = ("field", "linearize", "jvp")
    times = {row: {path: [] for path in paths} for row in rows}
    times["series hvp"] = {"fused": [], "reference": []}
    products: dict[str, torch.Tensor] = {}
    series_products: dict[str, list[torch.Tensor]] = {}
    fast.energy(y)  # loads numba's BLAS (scipy's OpenBLAS) now, so that threadpool_limits pins it too
    with threadpool_limits(1):
        v = torch.cos(torch.arange(y.numel(), dtype=y.dtype))
        series_hvp = _series_hvp(fast.layout.m, order)
        for round_ in range(args.repeats + 1):  # round 0 warms up (numba's cache, allocators)
            for path, (flow, context) in paths.items():
                with context():
                    t_field, _ = _timed(lambda: flow(y))  # noqa: B023 (called at once)
                    t_lin, lin = _timed(lambda: flow.linearize(y))  # noqa: B023
                    t_jvp, products[path] = _timed(lambda: lin.jvp(v))  # noqa: B023
                    if path != "fast":
                        t_series, series_products[path] = _timed(series_hvp)
                if round_:
                    for row, t in zip(rows, (t_field, t_lin, t_jvp), strict=True):
                        times[row][path].append(t)
                    if path != "fast":
                        times["series hvp"][path].append(t_series)
    layout = fast.layout
    print(f"{args.problem.name}: M = {layout.m}, d = {layout.d}, k = {layout.k}, Mehler order {order}; one thread; {args.repeats} alternating rounds")
    for row, row_times in times.items():
        _summary(row, row_times)
    for path in ("fast", "fused"):
        print(f"  JVP relative difference {path} vs reference: {_relative(products[path], products['reference']):.2e}")
    series_diff = max(_relative(f, r) for f, r in zip(series_products["fused"], series_products["reference"], strict=True))
    print(f"  series HVP relative difference fused vs reference: {series_diff:.2e}")


def _relative(fast: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(fast - ref) / torch.linalg.vector_norm(ref))


if __name__ == "__main__":
    main(sys.argv[1:])
