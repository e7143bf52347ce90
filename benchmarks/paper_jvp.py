"""The paper scenario's field and Jacobian-vector product: fused Mehler series against the reference path.

Run from the repository root::

    python -m benchmarks.paper_jvp [--repeats 7] [--problem landscape/examples/paper.toml]

Builds the problem of ``landscape/examples/paper.toml`` (d = 20, k = 5, 500 sigmoid
neurons, Mehler order 32) at its initial measure, linearises the particle flow there
(``ParticleFlow.linearize``, what ``rosenbrock23`` does once per step) and times one field
evaluation and one JVP (one reverse-over-reverse pass, what each GMRES iteration costs)
with the fused numba series (:mod:`landscape.model.fused_series`, the default) and inside
``reference_kernels()`` (the torch path), alternating the two so that machine load hits
both alike. A third row times the series alone: a Hessian-vector product (reverse over
reverse) of ``Σ κ²`` for ``κ = mehler_series(ρ, α, β)`` at the paper's sizes (M × M,
order T, random ρ and coefficients). Every thread pool is pinned to one thread
(``threadpool_limits(1)``, torch and numba). Prints median and min–max wall-clock times
per path, their ratio, and the relative differences of the two paths' products
(rounding: ≲ 1e-12).
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


def _paper_flow(problem: Path) -> tuple[ParticleFlow, torch.Tensor, int]:
    """The flow of ``problem``, its initial state (shape (state size,)) and its Mehler order."""
    spec = load_problem(problem)
    landscape = spec.landscape()
    measure = initial_measure(parse_init(spec.tables.get("init"), problem.parent), landscape, spec.features)
    layout = Layout(measure.size, spec.features, landscape.input_dim, gamma=False)
    a, w, p = measure.tensors()
    return ParticleFlow(landscape, layout), layout.pack(a, w, p, None, 0.0), spec.quadrature.order


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
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _summary(name: str, fast: list[float], ref: list[float]) -> None:
    mf, mr = statistics.median(fast), statistics.median(ref)
    print(
        f"  {name:<18} fast {mf * 1e3:9.1f} ms [{min(fast) * 1e3:.1f}–{max(fast) * 1e3:.1f}]"
        f"   reference {mr * 1e3:9.1f} ms [{min(ref) * 1e3:.1f}–{max(ref) * 1e3:.1f}]   ratio {mr / mf:5.2f}×",
        flush=True,
    )


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
        flow, y, order = _paper_flow(args.problem)
    except ValueError as err:
        parser.error(str(err))
    with threadpool_limits(1):
        v = torch.cos(torch.arange(y.numel(), dtype=y.dtype))
        series_hvp = _series_hvp(flow.layout.m, order)
        paths = {"fast": contextlib.nullcontext, "reference": reference_kernels}
        times: dict[str, dict[str, list[float]]] = {p: {"field": [], "jvp": [], "series hvp": []} for p in paths}
        products: dict[str, torch.Tensor] = {}
        series_products: dict[str, list[torch.Tensor]] = {}
        for round_ in range(args.repeats + 1):  # round 0 warms up (numba's cache, allocators)
            for path, context in paths.items():
                with context():
                    t_field, _ = _timed(lambda: flow(y))
                    lin = flow.linearize(y)
                    t_jvp, products[path] = _timed(lambda: lin.jvp(v))
                    t_series, series_products[path] = _timed(series_hvp)
                if round_:
                    times[path]["field"].append(t_field)
                    times[path]["jvp"].append(t_jvp)
                    times[path]["series hvp"].append(t_series)
    layout = flow.layout
    print(f"{args.problem.name}: M = {layout.m}, d = {layout.d}, k = {layout.k}, Mehler order {order}; one thread; {args.repeats} alternating rounds")
    for name in times["fast"]:
        _summary(name, times["fast"][name], times["reference"][name])
    print(f"  JVP relative difference fast vs reference: {_relative(products['fast'], products['reference']):.2e}")
    series_diff = max(_relative(f, r) for f, r in zip(series_products["fast"], series_products["reference"], strict=True))
    print(f"  series HVP relative difference fast vs reference: {series_diff:.2e}")


def _relative(fast: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(fast - ref) / torch.linalg.vector_norm(ref))


if __name__ == "__main__":
    main(sys.argv[1:])
