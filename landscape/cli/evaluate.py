"""``landscape evaluate``: loss, Γ*, stationarity, conditioning and first variation of a measure."""

from __future__ import annotations

import argparse
import json
import sys

from ..io.files import load_npz
from ..io.problem import load_problem
from ..model.measure import ParticleMeasure
from .common import check_device, judge_errors

__all__ = ["register", "warn_order_choice"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand to ``sub``."""
    ev = sub.add_parser("evaluate", help="loss, Γ*, stationarity, conditioning and first variation of a measure")
    ev.add_argument("--problem", required=True, help="problem file (TOML)")
    ev.add_argument("--measure", required=True, help="measure file (.npz with a, w, optional p)")
    ev.add_argument("--probes", help=".npz with a (Q×k) and w (Q×d): report δL/δµ there")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ev.set_defaults(run=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    spec = load_problem(args.problem)
    measure = ParticleMeasure.load(args.measure)
    spec.check_memory(measure.size, f"measure file {args.measure!r}")
    landscape = spec.landscape(device=check_device(args.device), weights=measure.w)
    landscape.check_measure(measure, features=spec.features)
    warn_order_choice(landscape.expectation.describe())
    probes = None
    if args.probes is not None:
        arrays = load_npz(args.probes, required=("a", "w"), what="probes")
        probes = (arrays["a"], arrays["w"])
    evaluation = landscape.evaluate(measure, probes, errors=True)
    result = evaluation.to_dict()
    judge_errors(result, evaluation.loss_bounds, "samples" if spec.method == "monte_carlo" else "fourth_moment_samples")
    if args.json:
        print(json.dumps(result, allow_nan=False))
    else:
        _print_table(result)
    return 0


def warn_order_choice(description: dict) -> None:
    """A ``warning:`` line on stderr when ``hermite_order = "auto"`` found no order of its ladder that meets its tolerance."""
    choice = description.get("hermite_order_auto")
    if choice is not None and not choice["met"]:
        print(
            f"warning: hermite_order = \"auto\": the Mehler truncation bound {choice['bound']:.1e} at the largest order "
            f"{description['hermite_order']} exceeds {choice['tolerance']:g} for these weights; set hermite_order higher "
            "explicitly (or rescale the weights).",
            file=sys.stderr,
        )


def _print_table(result: dict) -> None:
    errors = result["errors"]
    rows = [
        ("loss L_N(µ)", "loss"),
        ("loss L_∞(µ)", "loss_inf"),
        ("loss_star L*", "loss_star"),
        ("grad_norm ‖∇δL/δµ‖", "grad_norm"),
        ("sigma_min λ_min(Σ_µµ)", "sigma_min"),
        ("sigma_cond", "sigma_cond"),
        ("prompt_length N", "prompt_length"),
    ]
    for name, key in rows:
        value = result[key]
        text = "n/a" if value is None else (f"{value:.12g}" if isinstance(value, float) else str(value))
        if key in errors:
            text = f"{text:<20} ± {_error_text(errors[key])}"
        print(f"{name:<24} {text}")
    print(f"gamma Γ*(µ):  (each entry ± {_error_text(errors['gamma'])})")
    for row in result["gamma"]:
        print("   " + " ".join(f"{x: .6g}" for x in row))
    if "first_variation" in result:
        print(f"first_variation δL/δµ at probes:  (each ± {_error_text(errors['first_variation'])})")
        print("   " + " ".join(f"{x:.12g}" for x in result["first_variation"]))


def _error_text(parts: dict) -> str:
    """``total (truncation t, step s, sampling m)``."""
    return (
        f"{parts['total']:.1e} (truncation {parts['truncation']:.1e}, step {parts['quadrature_step']:.1e}, "
        f"sampling {parts['sampling']:.1e})"
    )
