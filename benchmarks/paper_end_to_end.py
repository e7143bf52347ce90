"""The paper scenario end to end: ``landscape/examples/paper.toml`` trained to its final time on the fast
engine and on the reference path, in one process, one thread.

Run from the repository root::

    python -m benchmarks paper-end-to-end [--time 12] [--problem landscape/examples/paper.toml]

The reference path is ``engine = "reference"`` (the autograd field and JVP) with the torch Mehler series
(:func:`landscape.model.fused_series.reference_kernels`); both use the same integrator settings, so they
take the same steps to the integrator's tolerance. Prints, per path, CPU seconds (``time.process_time``),
steps, field evaluations and Jacobian-vector products, then the ratio and the largest relative difference
of the two loss curves. The reference run takes about 7 CPU-minutes here (2026-11-30).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np

from landscape.dynamics.rundir import dumps_toml
from landscape.dynamics.train import train
from landscape.dynamics.trajectory import read_trajectory
from landscape.io.files import read_toml
from landscape.model.fused_series import reference_kernels

from .pinning import pinned

PAPER = Path(__file__).resolve().parent.parent / "landscape" / "examples" / "paper.toml"


def _run(tables: dict, engine: str, folder: Path) -> tuple[float, object, np.ndarray]:
    """Train ``tables`` with ``engine`` into ``folder``; (CPU seconds, the run's result, its loss column)."""
    tables = {**tables, "dynamics": {**tables["dynamics"], "engine": engine}}
    (folder / "problem.toml").write_text(dumps_toml(tables))
    kernels = reference_kernels() if engine == "reference" else contextlib.nullcontext()
    start = time.process_time()
    with kernels:
        result = train(folder / "problem.toml", folder / "run")
    return time.process_time() - start, result, read_trajectory(folder / "run").columns["loss"]


def main(argv: list[str] | None = None) -> None:
    """Run both paths and print the comparison."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks paper-end-to-end", description=__doc__.split("\n")[0])
    parser.add_argument("--problem", type=Path, default=PAPER, help="a problem file with [init] and [dynamics] (default paper.toml)")
    parser.add_argument("--time", type=float, default=None, help="final time (default: the file's)")
    args = parser.parse_args(argv)
    if not args.problem.is_file():
        parser.error(f"--problem {args.problem}: no such file")
    if args.time is not None and not args.time > 0:
        parser.error("--time must be positive")
    try:
        tables = read_toml(args.problem, "problem")
    except ValueError as err:
        parser.error(str(err))
    if not isinstance(tables.get("dynamics"), dict):
        parser.error(f"--problem {args.problem}: no [dynamics] table (the run needs one)")
    if args.time is not None:
        tables["dynamics"] = {**tables["dynamics"], "time": args.time}
    runs = {}
    with pinned(lambda: None), tempfile.TemporaryDirectory() as scratch:
        for engine in ("fast", "reference"):
            folder = Path(scratch) / engine
            folder.mkdir()
            try:
                runs[engine] = _run(tables, engine, folder)
            except ValueError as err:  # a problem that `landscape train` refuses: its one line
                parser.error(str(err))
            seconds, result, _ = runs[engine]
            print(f"{engine:9s} {seconds:8.1f} s CPU  {result.steps} steps, {result.evaluations} fields, "
                  f"{result.jacobian_products} JVPs, final loss {result.loss:.10g}", flush=True)
    (fast_s, _, fast_loss), (ref_s, _, ref_loss) = runs["fast"], runs["reference"]
    rows = min(fast_loss.size, ref_loss.size)
    difference = float(np.max(np.abs(fast_loss[:rows] - ref_loss[:rows]) / np.abs(ref_loss[:rows])))
    print(f"reference / fast = {ref_s / fast_s:.1f}x; loss curves' largest relative difference {difference:.1e} "
          f"({fast_loss.size} and {ref_loss.size} rows)")
