"""The ``landscape train`` subcommand: run the particle flow of a problem file.

Exit status: 0 when the run completed, 1 when it stopped early (non-finite values, a
singular Σ_µµ, a negative weight, step-size underflow; ``RUN/status.json`` says which and
the last good state stays in ``RUN/checkpoint.npz``), 2 on bad input (one ``error:`` line).
A run whose explicit integrator was held at its stability limit (``"stiff": true`` in
``status.json``) ends its summary line with a hint to use ``rosenbrock23``.

Progress lines (elapsed wall time, step, ``t/T``, ETA) go to stderr after the first step and
then every ``--progress-interval`` seconds (default 5); ``--quiet`` switches them off. RUN must
be new, empty or made by ``landscape train`` (``--force`` for any other folder).
"""

from __future__ import annotations

import argparse
import sys

from ..dynamics.train import PROGRESS_INTERVAL, train

__all__ = ["register"]


def _train(args: argparse.Namespace) -> int:
    progress = None if args.quiet else sys.stderr
    result = train(
        args.problem, args.out, resume=args.resume, progress=progress, progress_interval=args.progress_interval, force=args.force
    )
    work = f"{result.evaluations} field evaluations"
    if result.jacobian_products:
        work += f", {result.jacobian_products} Jacobian-vector products"
    hint = ""
    if result.stiff:
        hint = (
            f'; the flow became stiff at t = {result.stiff_since:.3g} (the step was held at its stability limit): integrator = "rosenbrock23" is made for this'
        )
    print(f"{result.message} ({work}, {result.wall_seconds:.1f} s) -> {args.out}{hint}")
    return 0 if result.completed else 1


def register(subparsers) -> None:
    """Add ``train`` to the ``landscape`` command's subparsers."""
    parser = subparsers.add_parser("train", help="run the particle gradient flow ([init] and [dynamics] tables)")
    parser.add_argument("--problem", required=True, help="problem file (TOML) with [init] and [dynamics]")
    parser.add_argument("--out", required=True, help="run directory (created)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--force", action="store_true", help="start in a non-empty --out that landscape did not make")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--progress-interval",
        type=float,
        default=PROGRESS_INTERVAL,
        metavar="SECONDS",
        help=f"least seconds between two progress lines (default {PROGRESS_INTERVAL:g})",
    )
    parser.set_defaults(run=_train)
