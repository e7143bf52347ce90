"""``landscape verify``: the paper's claims as numerical checks, with baselines and a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``verify`` subcommand."""
    parser = sub.add_parser("verify", help="check the paper's claims numerically (the main job)")
    parser.add_argument("--profile", default="full", help="quick | full (default: full)")
    parser.add_argument("--claims", nargs="+", metavar="ID", help="claim ids to check (default: all)")
    parser.add_argument("--out", default="verify-results", help="output folder (default: ./verify-results)")
    parser.add_argument(
        "--baseline",
        default="shipped",
        help="results.json to compare with; 'shipped' (default) uses the baseline shipped for the profile",
    )
    parser.add_argument("--no-baseline", action="store_true", help="do not compare with any baseline")
    parser.add_argument("--update-baseline", action="store_true", help="write this run as the baseline file (atomically)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for seeds and sweeps (joblib)")
    parser.add_argument("--scheduler", help="Dask distributed scheduler address (tcp://host:port)")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML/Markdown report")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from verification.baseline import load_baseline, save_baseline
    from verification.parallel import TaskPool
    from verification.profiles import get_profile
    from verification.registry import resolve_ids
    from verification.runner import SHIPPED_BASELINES, compare_with, format_table, run_suite

    if args.update_baseline and args.no_baseline:
        raise ValueError("--update-baseline needs a baseline path; it cannot be combined with --no-baseline.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder.")
    profile = get_profile(args.profile)
    ids = resolve_ids(args.claims)
    pool = TaskPool(jobs=args.jobs, scheduler=args.scheduler)
    baseline_path = None
    if not args.no_baseline:
        baseline_path = SHIPPED_BASELINES / f"{profile.name}.json" if args.baseline == "shipped" else Path(args.baseline)
    baseline = None
    if baseline_path is not None and not args.update_baseline:
        if args.baseline == "shipped" and not baseline_path.is_file():
            print(f"note: no shipped baseline for profile {profile.name!r}; nothing to compare with.", file=sys.stderr)
        else:
            baseline = load_baseline(baseline_path)  # validated before the (long) run
    results = run_suite(ids, profile, out, pool, log=lambda line: print(line, file=sys.stderr))
    changes = compare_with(results, baseline) if baseline is not None else []
    print(format_table(results, changes))
    for change in changes:
        print(change.line())
    if args.update_baseline:
        save_baseline(baseline_path, results)
        print(f"baseline written: {baseline_path}")
    if not args.no_report:
        from reports.build import build_report

        build_report(out, out)
        print(f"report: {out / 'index.html'}")
    failed = any(r.verdict == "fail" for r in results)
    regressed = any(c.regression for c in changes)
    return 1 if failed or regressed else 0
