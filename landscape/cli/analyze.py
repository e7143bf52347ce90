"""The ``landscape analyze`` subcommand: classify a measure with certificates (docs/theory.md §7–8).

Prints everything ``evaluate`` prints plus ``classification`` and ``hessian``, and
``problem`` (absolute path) and ``measure`` (where the analysed measure is). With
``--out DIR`` also writes ``DIR/psi0.npz`` (arrays ``a`` (M, k), ``w`` (M, d): ψ0 per
particle, unit in L²(µ)), ``DIR/measure.npz`` (the measure analysed: refined with
``--refine``; ``measure`` is then ``"measure.npz"``) and ``DIR/analysis.json``, each
atomically and only after the whole analysis succeeded. DIR must be new, empty, made by
``landscape analyze`` or a ``landscape train`` run directory; ``--force`` writes into any
folder. DIR is committed whole (:func:`landscape.io.files.staged_output`): the three files
are written into a staging folder beside DIR and swapped in together, so a kill or a full
disk leaves the previous DIR as it was; a second process on DIR is refused. A
``degenerate`` verdict prints a loud warning on stderr; text mode says when ``--refine`` did
not converge. Bad input: one ``error:`` line, exit status 2, nothing written.

``--spectrum`` adds the whole spectrum of the same Wasserstein Hessian (null directions
included; :mod:`landscape.second_order.spectrum`): ``spectral_density`` = ``{nodes, weights,
probes, steps, error, hvp_count}`` by stochastic Lanczos quadrature (``--spectrum-probes``
Rademacher probes, default 16; ``--spectrum-steps`` Lanczos steps each, default 40, capped at
``n``; probe seed 0) and ``trace`` = ``{value, stderr, probes, method, products, sketch}``
(``--trace-method hutchinson``, the default: the same probes, no extra product; ``hutch++``:
Hutch++ with ``--spectrum-probes`` more products, its standard error that of the residual part);
with ``--out`` they are in ``analysis.json``, and ``landscape report`` draws the density.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..io.files import check_output_folder, save_npz, staged_output, write_json
from ..io.problem import load_problem
from ..model.measure import ParticleMeasure
from ..second_order.classify import analyze
from ..second_order.operators import WassersteinHessian
from ..second_order.settings import AnalysisSettings
from ..second_order.spectrum import DEFAULT_PROBES, DEFAULT_STEPS, DEFAULT_TRACE_METHOD, TRACE_METHODS, spectral_density
from .common import check_device, judge_errors
from .evaluate import warn_order_choice

__all__ = ["register"]

#: ``--out`` may also be a ``landscape train`` run directory (its report then shows the analysis too).
OUT_ACCEPTS = ("train",)
#: what ``--out`` receives (committed together, :func:`landscape.io.files.staged_output`).
OUT_FILES = ("measure.npz", "psi0.npz", "analysis.json")
#: how the text output names each trace method.
TRACE_NAMES = {"hutchinson": "Hutchinson", "hutch++": "Hutch++"}


def _analyze(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out is not None else None
    if out is not None:
        check_output_folder(out, "analyze", args.force, accept=OUT_ACCEPTS)  # refuse before the (long) analysis
    spec = load_problem(args.problem)
    measure = ParticleMeasure.load(args.measure)
    spec.check_memory(measure.size, f"measure file {args.measure!r}")
    landscape = spec.landscape(device=check_device(args.device), weights=measure.w)
    warn_order_choice(landscape.expectation.describe())
    settings = AnalysisSettings.from_table(spec.tables.get("analysis"), landscape.dtype)
    landscape.check_measure(measure, features=spec.features)
    if args.spectrum_probes < 1 or args.spectrum_steps < 1:
        raise ValueError(f"--spectrum-probes and --spectrum-steps must be ≥ 1, got {args.spectrum_probes} and {args.spectrum_steps}.")
    if args.trace_method == "hutch++" and args.spectrum_probes < 3:
        raise ValueError(f"--trace-method hutch++ needs --spectrum-probes ≥ 3, got {args.spectrum_probes}.")
    result = analyze(landscape, measure, settings, refine_first=args.refine)
    report = result.to_dict()
    if args.spectrum:
        hessian = WassersteinHessian(landscape, result.measure)
        density = spectral_density(hessian, args.spectrum_probes, args.spectrum_steps, trace_method=args.trace_method)
        report["spectral_density"] = density.to_dict()
        report["trace"] = density.trace.to_dict()
    evaluation = landscape.evaluate(result.measure, errors=True)  # the error estimates of evaluate's numbers
    report["errors"] = evaluation.errors
    judge_errors(report, evaluation.loss_bounds, "samples" if spec.method == "monte_carlo" else "fourth_moment_samples")
    report["problem"] = str(Path(args.problem).resolve())
    report["measure"] = "measure.npz" if out is not None else str(Path(args.measure).resolve())
    if out is not None:
        with staged_output(out, "analyze", args.force, accept=OUT_ACCEPTS, replace=OUT_FILES) as staging:
            result.measure.save(staging / "measure.npz")
            save_npz(staging / "psi0.npz", a=result.psi0[0], w=result.psi0[1])
            write_json(staging / "analysis.json", report)
    for message in result.warnings:
        if result.verdict == "degenerate" and message.startswith("DEGENERATE"):
            bar = "!" * 78
            print(f"{bar}\nWARNING: {message}\n{bar}", file=sys.stderr)
        else:
            print(f"warning: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, allow_nan=False))
    else:
        _print_summary(report)
    return 0


def _print_summary(report: dict) -> None:
    h = report["hessian"]
    rows = [
        ("classification", report["classification"]),
        ("loss L_N(µ)", report["loss"]),
        ("loss_star L*", report["loss_star"]),
        ("grad_norm ‖∇δL/δµ‖", report["grad_norm"]),
        ("lambda_min", h["lambda_min"]),
        ("eigen-residual", h["residual"]),
        ("null_dim (deflated)", h["null_dim"]),
        ("zero_count", h["zero_count"]),
        ("converged", h["converged"]),
        ("hvp_count", h["hvp_count"]),
    ]
    cert = report["certificate"]
    if cert is not None:
        rows.append(("saddle certified", cert["certified"]))
        rows.append(("L decreases along ψ0 up to s", cert["line_search"]["certified_up_to"]))
    curv = report["curvature"]
    if curv is not None:
        rows += [("d²L(µ_s)/ds²", curv["second_variation"]), ("ratio / L(µ)²", curv["ratio"]), ("4/(k R₁²)", curv["bound_constant"])]
    refinement = report["refinement"]
    if refinement is not None:
        rows.append(("refinement residual", refinement["residual"]))
        verdict = "yes" if refinement["converged"] else f"NO, stopped by {refinement['reason']}: the measure is not refined to tolerance"
        rows.append(("refinement converged", verdict))
    density = report.get("spectral_density")
    if density is not None:
        zero_tol = report["settings"]["zero_tol"]
        negative = sum(w for x, w in zip(density["nodes"], density["weights"], strict=True) if x < -zero_tol)
        rows += [
            ("spectral density (SLQ)", f"{density['probes']} probes × {density['steps']} steps, W1 error ≈ {density['error']['w1_estimate']:.2g}"),
            ("spectrum range", f"[{min(density['nodes']):.6g}, {max(density['nodes']):.6g}]"),
            ("spectral mass below −zero_tol", negative),
            (f"trace ({TRACE_NAMES[report['trace']['method']]})",
             f"{report['trace']['value']:.8g} ± {report['trace']['stderr'] or math.nan:.2g}, {report['trace']['products']} products"),
        ]
    for name, value in rows:
        text = "n/a" if value is None else (f"{value:.12g}" if isinstance(value, float) else str(value))
        print(f"{name:<30} {text}")


def register(subparsers) -> None:
    """Add ``analyze`` to the ``landscape`` command's subparsers."""
    parser = subparsers.add_parser(
        "analyze", help="classify a measure: λ_min and ψ0 of the Wasserstein Hessian, certified verdict"
    )
    parser.add_argument("--problem", required=True, help="problem file (TOML), optional [analysis] table")
    parser.add_argument("--measure", required=True, help="measure file (.npz with a, w, optional p)")
    parser.add_argument("--refine", action="store_true", help="Newton–Krylov refinement to a critical point first")
    parser.add_argument("--out", help="directory for psi0.npz and analysis.json")
    parser.add_argument("--force", action="store_true", help="write into --out even if it holds files landscape did not make")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--spectrum", action="store_true", help="the Hessian's whole spectrum (stochastic Lanczos quadrature) and its trace")
    parser.add_argument("--spectrum-probes", type=int, default=DEFAULT_PROBES, help=f"Rademacher probes for --spectrum (default {DEFAULT_PROBES})")
    parser.add_argument("--spectrum-steps", type=int, default=DEFAULT_STEPS, help=f"Lanczos steps per probe for --spectrum (default {DEFAULT_STEPS})")
    parser.add_argument(
        "--trace-method", choices=TRACE_METHODS, default=DEFAULT_TRACE_METHOD,
        help=f"trace estimator for --spectrum (default {DEFAULT_TRACE_METHOD}; hutch++ spends --spectrum-probes more products)",
    )
    parser.set_defaults(run=_analyze)
