"""The ``landscape`` command: one module per subcommand (:mod:`.evaluate`, :mod:`.train`, :mod:`.analyze`,
:mod:`.verify`, :mod:`.report`) and their shared helpers (:mod:`.common`). The only modules of
``landscape`` that import ``verification`` or ``reports``.

Bad input of any kind ends with one line ``error: …`` on stderr and exit status 2; no
traceback (set ``LANDSCAPE_DEBUG=1`` to see one for an unexpected failure). An interrupt
(Ctrl-C) ends with the one line ``error: interrupted`` and exit status 130 (128 + SIGINT, the
shell's convention); every file is written atomically, so none is left half-written (a train
run keeps its last checkpoint for ``--resume``).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Sequence

import torch

from .. import __version__
from .analyze import register as register_analyze
from .common import Parser
from .evaluate import register as register_evaluate
from .report import register as register_report
from .train import register as register_train
from .verify import register as register_verify

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = Parser(prog="landscape", description="The attention landscape of Kim & Suzuki (ICML 2024), computed.")
    parser.add_argument("--version", action="version", version=f"landscape {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    register_evaluate(sub)
    register_train(sub)
    register_analyze(sub)
    register_verify(sub)
    register_report(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``landscape`` console script; returns the exit status.

    Warnings raised on the way (numpy overflow, precision) are held back: when the command
    ran to its end (whatever its status) they follow on stderr as ``warning: …`` lines; when
    it failed, the one ``error:`` line stands alone.
    """
    with warnings.catch_warnings(record=True) as caught:
        status, completed = _main(argv)
    if completed:
        for item in caught:
            message = " ".join(str(item.message).split())
            print(f"warning: {item.category.__name__}: {message}", file=sys.stderr)
    return status


def _main(argv: Sequence[str] | None) -> tuple[int, bool]:
    """``(exit status, whether the command ran to its end)``."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.run(args), True
    except MemoryError as err:
        print(f"error: out of memory ({' '.join(str(err).split())})", file=sys.stderr)
        return 2, False
    except (ValueError, OSError, OverflowError, torch.linalg.LinAlgError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2, False
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130, False
    except Exception as err:  # noqa: BLE001 - the contract is one line, never a traceback
        if os.environ.get("LANDSCAPE_DEBUG"):
            raise
        print(f"error: unexpected {type(err).__name__}: {err} (set LANDSCAPE_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1, False
