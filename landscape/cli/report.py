"""``landscape report INPUT --out DIR``: an HTML page and a Markdown summary with figures.

INPUT is a ``landscape verify`` output (``results.json``), a ``landscape train`` run
directory (``trajectory.csv``) or a ``landscape analyze`` output (``analysis.json``). Bad
input ends with one ``error:`` line and exit status 2, and nothing is written. DIR must be
empty, new, made by ``landscape report`` (its marker file) or INPUT itself when landscape made
it; ``--force`` writes into any folder (:func:`landscape.io.files.check_output_folder`).

DIR is committed whole (:func:`landscape.io.files.staged_output`): the report is built in a
staging folder beside DIR — a hard-link copy of DIR without its previous report, so INPUT as
DIR keeps everything else — and swapped in at the end. A kill or a full disk leaves the
previous DIR exactly as it was; a second process on DIR is refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io.files import check_output_folder, resolve_path, staged_output

__all__ = ["register"]

#: the entries a report consists of (made anew each time: no figure of an earlier report survives).
REPORT_FILES = ("index.html", "summary.md", "figures")


def _report(args: argparse.Namespace) -> int:
    from reports.build import build_report

    optional = {name: Path(getattr(args, name)) for name in ("measure", "problem") if getattr(args, name) is not None}
    inputs, out = Path(args.input), Path(args.out)
    same = resolve_path(out, "--out") == resolve_path(inputs, "report input")
    accept = ("verify", "train", "analyze") if same else ()  # into its own input folder
    check_output_folder(out, "report", args.force, accept)
    with staged_output(out, "report", args.force, accept, replace=REPORT_FILES) as staging:
        build_report(inputs, staging, **optional)
    print(f"report: {out / 'index.html'}")
    return 0


def register(subparsers) -> None:
    """Add ``report`` to the ``landscape`` command's subparsers."""
    parser = subparsers.add_parser("report", help="HTML + Markdown report of a verify, train or analyze output")
    parser.add_argument("input", metavar="INPUT", help="a verify output, a train run directory or an analyze output")
    parser.add_argument("--out", required=True, help="output folder for index.html, summary.md and figures/")
    parser.add_argument("--force", action="store_true", help="write into --out even if it holds files landscape did not make")
    parser.add_argument("--measure", help="analyze output only: the measure analysed (.npz), to draw ψ0 on the particles")
    parser.add_argument("--problem", help="analyze output only: its problem file (TOML), for the teacher directions")
    parser.set_defaults(run=_report)
