"""The ``landscape`` command.

Bad input of any kind ends with one line ``error: …`` on stderr and exit status 2; no
traceback (set ``LANDSCAPE_DEBUG=1`` to see one for an unexpected failure). An interrupt
(Ctrl-C) ends with the one line ``error: interrupted`` and exit status 130 (128 + SIGINT, the
shell's convention); every file is written atomically, so none is left half-written (a train
run keeps its last checkpoint for ``--resume``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Sequence

import torch

from . import __version__
from .cli_analyze import register as register_analyze
from .cli_report import register as register_report
from .cli_train import register as register_train
from .cli_verify import register as register_verify
from .config import load_problem
from .io import load_npz
from .measure import ParticleMeasure

__all__ = ["main"]


class UsageError(ValueError):
    """Bad command-line usage."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        raise UsageError(message)


def _device(name: str) -> str:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine.")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {name!r}.")
    return name


def _evaluate(args: argparse.Namespace) -> int:
    spec = load_problem(args.problem)
    measure = ParticleMeasure.load(args.measure)
    landscape = spec.landscape(device=_device(args.device))
    landscape.check_measure(measure, features=spec.features)
    probes = None
    if args.probes is not None:
        arrays = load_npz(args.probes, required=("a", "w"), what="probes")
        probes = (arrays["a"], arrays["w"])
    result = landscape.evaluate(measure, probes).to_dict()
    if args.json:
        print(json.dumps(result, allow_nan=False))
    else:
        _print_table(result)
    return 0


def _print_table(result: dict) -> None:
    rows = [
        ("loss L_N(µ)", result["loss"]),
        ("loss L_∞(µ)", result["loss_inf"]),
        ("loss_star L*", result["loss_star"]),
        ("grad_norm ‖∇δL/δµ‖", result["grad_norm"]),
        ("sigma_min λ_min(Σ_µµ)", result["sigma_min"]),
        ("sigma_cond", result["sigma_cond"]),
        ("prompt_length N", result["prompt_length"]),
    ]
    for name, value in rows:
        text = "n/a" if value is None else (f"{value:.12g}" if isinstance(value, float) else str(value))
        print(f"{name:<24} {text}")
    print("gamma Γ*(µ):")
    for row in result["gamma"]:
        print("   " + " ".join(f"{x: .6g}" for x in row))
    if "first_variation" in result:
        print("first_variation δL/δµ at probes:")
        print("   " + " ".join(f"{x:.12g}" for x in result["first_variation"]))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(prog="landscape", description="The attention landscape of Kim & Suzuki (ICML 2024), computed.")
    parser.add_argument("--version", action="version", version=f"landscape {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ev = sub.add_parser("evaluate", help="loss, Γ*, stationarity, conditioning and first variation of a measure")
    ev.add_argument("--problem", required=True, help="problem file (TOML)")
    ev.add_argument("--measure", required=True, help="measure file (.npz with a, w, optional p)")
    ev.add_argument("--probes", help=".npz with a (Q×k) and w (Q×d): report δL/δµ there")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ev.set_defaults(run=_evaluate)
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


if __name__ == "__main__":
    sys.exit(main())
