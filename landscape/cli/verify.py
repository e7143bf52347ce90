"""``landscape verify``: the paper's claims as numerical checks, with baselines and a report.

``--out`` is written in place under a lock (:func:`landscape.io.files.output_lock`: a second
process on the same folder is refused). Its completion record is ``results.json`` with the
report (``index.html``, ``summary.md``): they are removed before the first claim runs and
written last, each atomically (``results.json`` once every claim has run, then the report),
so a run killed part-way leaves no record claiming a verdict for evidence it already
replaced: either no record (``landscape report`` refuses the folder), or the new
``results.json`` (with its report, unless killed while the report was being built). (The evidence
is not staged elsewhere and swapped in: its run directories record absolute paths of their
input files, which must stay valid where the folder ends up.)
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import socket
import sys
from pathlib import Path

from ..io.files import check_output_folder, claim_output_folder, output_lock

#: the completion record of ``--out``: removed first, written last.
RECORD = ("results.json", "index.html", "summary.md")
#: seconds ``--scheduler`` is given to accept a connection before verify refuses it.
SCHEDULER_TIMEOUT = 5.0


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
    parser.add_argument("--force", action="store_true", help="write into --out even if it holds files landscape did not make")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from verification.baseline import load_baseline, save_baseline
    from verification.parallel import TaskPool
    from verification.profiles import get_profile
    from verification.registry import resolve_ids
    from verification.runner import SHIPPED_BASELINES, format_table, run_suite
    from verification.scenarios import check_evidence_dir

    if args.update_baseline and args.no_baseline:
        raise ValueError("--update-baseline needs a baseline path; it cannot be combined with --no-baseline.")
    out = check_output_folder(args.out, "verify", args.force)  # refused before the (long) run
    profile = get_profile(args.profile)
    ids = resolve_ids(args.claims)
    if args.scheduler is not None:
        check_scheduler(args.scheduler)
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
    context = {"command": _command_line(args), "baseline": str(baseline_path) if baseline is not None else None}
    for claim_id in ids:  # a user's folder inside --out is refused before anything is written
        check_evidence_dir(out / claim_id)
    with output_lock(out):
        claim_output_folder(out, "verify", args.force)
        for name in RECORD:
            (out / name).unlink(missing_ok=True)
        suite = run_suite(ids, profile, out, pool, log=lambda line: print(line, file=sys.stderr), baseline=baseline, context=context)
        if not args.no_report:
            from reports.build import build_report

            build_report(out, out)
    results = suite.results
    print(format_table(results))
    for result in results:
        for failure in result.failures:
            print(f"FAILED: {result.id}: {failure}")
    for change in suite.changes:
        print(change.line())
    print(suite.status["headline"])
    if args.update_baseline:
        save_baseline(baseline_path, results)
        print(f"baseline written: {baseline_path}")
    if not args.no_report:
        print(f"report: {out / 'index.html'}")
    return 1 if suite.failed else 0


def check_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT) -> None:
    """Refuse a ``--scheduler`` address that is malformed or where no Dask scheduler answers an
    ``identity`` request within ``timeout`` seconds — before anything is written (the Dask
    client is made later, by the claims' task pool).

    Raises:
        ValueError: one line naming the address and what is wrong with it.
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    where = f"--scheduler {address!r}"
    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location) if scheme in ("tcp", "tls") else (None, None)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where} is not a scheduler address ({' '.join(str(err).split())}); expected tcp://host:port.") from None
    if scheme not in ("tcp", "tls"):
        raise ValueError(f"{where} uses the protocol {scheme!r}; expected tcp://host:port (or tls://host:port).")
    if not host or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{where} needs a host and a port between 1 and 65535; expected tcp://host:port.")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:  # refused, unknown host, unreachable: fast, before Dask's retries
        reason = err.strerror or f"no connection within {timeout:g} s"
        raise ValueError(f"cannot reach the Dask scheduler at {address!r} ({reason}); nothing was written.") from None
    try:
        answer = asyncio.run(asyncio.wait_for(_identity(address, timeout), timeout))
    except Exception:  # noqa: BLE001 - whatever the peer does (garbage, silence), the answer is one line
        answer = None
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        raise ValueError(f"{where} accepts connections but no Dask scheduler answered within {timeout:g} s; "
                         "nothing was written.")


async def _identity(address: str, timeout: float) -> object:
    """The ``identity`` answer of the Dask server at ``address`` (one connection, closed after)."""
    from distributed.comm import connect

    comm = await connect(address, timeout=timeout)
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()


def _command_line(args: argparse.Namespace) -> str:
    """The command as its options resolved (defaults included), for the report's provenance."""
    parts = ["landscape", "verify"]
    for key, value in vars(args).items():
        flag = "--" + key.replace("_", "-")
        if key == "command" or callable(value) or value is None or value is False or (key == "baseline" and args.no_baseline):
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)
