r"""How much each claim metric moves under what must not count as a regression.

A baseline tolerance is only meaningful against the spread of a metric between runs that
differ in nothing a user would call a change: the number of BLAS and torch threads, a
second code path of the same BLAS or vector kernels (another CPU would select it), a
repeated run, worker processes. This module runs the suite once per such *variant*, each
in its own process and output folder, and tabulates per metric

* ``spread``: ``max − min`` of the value over the variants;
* ``slack``: what the claim's :class:`~verification.baseline.Tolerance` allows against the
  reference run (``atol + rtol·|ref| + sigmas·√2·σ``), and ``slack / spread``.

A tolerance is sound when ``slack ≥ SAFETY · spread`` (report-only metrics are listed but
not judged). Run it as ::

    python -m verification.reproducibility --profile quick --out repro-quick

which writes ``repro-quick/spread.json`` and prints a table (a few minutes per variant).
The variants are :data:`VARIANTS`; ``--variants`` picks some of them.

On a machine where the thread and kernel switches change nothing (measured here: every
metric bitwise equal), another CPU still rounds differently (a reviewer's fresh machine
moved a rounding-level residual by 5%). The ``rounding-noise`` variants stand in for
that: Monte Carlo arithmetic (Parker 1997; the idea behind verificarlo) — every result of
a torch matrix product, solve, reduction or elementwise transcendental is multiplied by
``1 + u·2⁻⁵²``, ``u`` uniform on ``[−1, 1]`` (:func:`rounding_noise`), which is the size
of the difference a different summation order or vector kernel makes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .baseline import DEFAULT_TOLERANCE, Tolerance, load_baseline
from .registry import resolve_ids
from .runner import suite_tolerances

__all__ = ["Variant", "VARIANTS", "SAFETY", "rounding_noise", "run_variant", "spread_table", "main"]

#: a sound tolerance allows at least this many times the measured spread.
SAFETY = 5.0

#: torch functions whose results :func:`rounding_noise` perturbs (where BLAS and vector
#: kernels decide the rounding).
ROUNDED = ("matmul", "mm", "bmm", "mv", "einsum", "solve", "inv", "eigh", "eigvalsh", "cholesky", "cholesky_solve", "lstsq",
           "pinv", "svdvals", "solve_triangular", "sum", "exp", "erf", "sigmoid", "tanh", "log", "sqrt", "asin", "atan2")


def rounding_noise(seed: int):
    """A :class:`torch.overrides.TorchFunctionMode` that perturbs by one ulp, at random, every floating result of the :data:`ROUNDED` torch functions.

    Use it as a context manager (``with rounding_noise(0): …``); the ``rounding-noise``
    variants enter it for the whole process. It measures rounding sensitivity and is
    never meant for real runs.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    def jitter(x):
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel():
            # u ∈ [−1, 1) from a hash of the value and the seed (no random state: works under vmap)
            u = torch.frac(torch.sin(x.detach() * 12.9898 + seed) * 43758.5453) * 2 - 1
            return x * (1 + u * torch.finfo(x.dtype).eps / 2)
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            return type(x)(*(jitter(v) for v in x))
        return x

    class RoundingNoise(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = getattr(func, "__name__", "")
            return jitter(out) if name.removeprefix("linalg_").removeprefix("special_").strip("_") in ROUNDED else out

    return RoundingNoise()


def _rounding_launcher(seed: int) -> str:
    return (f"import sys; from verification.reproducibility import rounding_noise; rounding_noise({seed}).__enter__(); "
            "from landscape.cli import main; sys.exit(main(sys.argv[1:]))")


#: a launcher that gives torch two intra-op threads although the claims ask for one.
_TWO_TORCH_THREADS = (
    "import sys, torch; _set = torch.set_num_threads; torch.set_num_threads = lambda n: _set(2); "
    "from landscape.cli import main; sys.exit(main(sys.argv[1:]))"
)
_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Variant:
    """One way of running the suite that must not change its verdicts.

    Attributes:
        name: short label.
        env: environment variables set for the run.
        launcher: Python source run with ``-c`` instead of the plain CLI (``None``: the CLI).
        args: extra ``landscape verify`` arguments.
    """

    name: str
    env: dict[str, str] = field(default_factory=dict)
    launcher: str | None = None
    args: tuple[str, ...] = ()


VARIANTS = (
    Variant("reference"),
    Variant("repeat"),
    Variant("blas-1-thread", env=_ONE_THREAD),
    Variant("torch-2-threads", launcher=_TWO_TORCH_THREADS),
    # a second code path of every vector/BLAS library in the process: OpenBLAS's generic
    # x86-64 kernels, torch's non-vectorised ATen kernels, MKL restricted to SSE4.2.
    Variant(
        "generic-kernels",
        env={"OPENBLAS_CORETYPE": "Prescott", "ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    ),
    Variant("jobs-2", env=_ONE_THREAD, args=("--jobs", "2")),
    Variant("rounding-noise-1", launcher=_rounding_launcher(1)),
    Variant("rounding-noise-2", launcher=_rounding_launcher(2)),
)


def run_variant(variant: Variant, profile: str, claims: list[str], out: Path) -> Path:
    """Run the suite as ``variant`` into ``out/<name>``; returns its ``results.json``."""
    folder = out / variant.name
    env = {**os.environ, **variant.env}
    entry = ["-c", variant.launcher] if variant.launcher else ["-m", "landscape.cli"]
    cmd = [sys.executable, *entry, "verify", "--profile", profile, "--out", str(folder), "--no-baseline", "--no-report",
           "--claims", *claims, *variant.args]
    subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL)
    results = folder / "results.json"
    if not results.is_file():
        raise RuntimeError(f"variant {variant.name!r} wrote no results ({' '.join(cmd)}).")
    return results


def _slack(tol: Tolerance, ref: float, sigma: float) -> float:
    return tol.atol + tol.rtol * abs(ref) + tol.sigmas * math.sqrt(2.0) * sigma


def spread_table(runs: dict[str, Path], reference: str = "reference") -> list[dict]:
    """Per claim and metric: the values over the variants, their spread and the tolerance's slack.

    Args:
        runs: variant name → its ``results.json``.
        reference: the variant the slack is computed at.
    """
    records = {name: {r.id: r for r in load_baseline(path)} for name, path in runs.items()}
    ref = records[reference]
    tolerances = suite_tolerances(list(ref))
    rows = []
    for claim_id, result in ref.items():
        for metric_name, metric in result.metrics.items():
            values = [records[v][claim_id].metrics[metric_name].value for v in records
                      if claim_id in records[v] and metric_name in records[v][claim_id].metrics]
            finite = [x for x in values if math.isfinite(x)]
            tol = tolerances.get(claim_id, {}).get(metric_name, DEFAULT_TOLERANCE)
            spread = (max(finite) - min(finite)) if len(finite) == len(values) and finite else math.nan
            slack = _slack(tol, metric.value, metric.uncertainty) if math.isfinite(metric.value) else math.nan
            verdicts = {records[v][claim_id].verdict for v in records if claim_id in records[v]}
            rows.append({
                "claim": claim_id, "metric": metric_name, "reference": metric.value, "min": min(finite, default=math.nan),
                "max": max(finite, default=math.nan), "spread": spread,
                "relative_spread": spread / abs(metric.value) if metric.value else math.nan,
                "compared": tol.compare, "slack": slack, "slack_over_spread": slack / spread if spread > 0 else math.inf,
                "sound": (not tol.compare) or (math.isfinite(spread) and slack >= SAFETY * spread),
                "verdicts": sorted(verdicts),
            })
    return rows


def _format(rows: list[dict]) -> str:
    lines = [f"{'claim':20} {'metric':32} {'reference':>12} {'spread':>10} {'rel':>9} {'slack':>10} {'x':>8}  judged"]
    for r in rows:
        judged = "report-only" if not r["compared"] else ("ok" if r["sound"] else f"TOO TIGHT: needs slack ≥ {SAFETY * r['spread']:.2g}")
        lines.append(f"{r['claim']:20} {r['metric']:32} {r['reference']:12.5g} {r['spread']:10.3g} {r['relative_spread']:9.2g} "
                     f"{r['slack']:10.3g} {r['slack_over_spread']:8.3g}  {judged}"
                     + ("" if len(r["verdicts"]) == 1 else f"  VERDICTS DIFFER {r['verdicts']}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verification.reproducibility", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--claims", nargs="+", metavar="ID")
    parser.add_argument("--out", required=True, help="folder for the variants' runs and spread.json")
    parser.add_argument("--variants", nargs="+", choices=[v.name for v in VARIANTS], help="default: all")
    parser.add_argument("--reuse", action="store_true", help="tabulate runs already in --out instead of running them")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        claims = resolve_ids(args.claims)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {str(out)!r} exists and is not a folder.")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    chosen = [v for v in VARIANTS if not args.variants or v.name in args.variants or v.name == "reference"]
    runs = {}
    for variant in chosen:
        if args.reuse and (out / variant.name / "results.json").is_file():
            runs[variant.name] = out / variant.name / "results.json"
            continue
        print(f"variant {variant.name} …", file=sys.stderr, flush=True)
        try:
            runs[variant.name] = run_variant(variant, args.profile, claims, out)
        except RuntimeError as err:  # the suite itself could not run (its own error is printed above)
            print(f"error: {err}", file=sys.stderr)
            return 1
    rows = spread_table(runs)
    (out / "spread.json").write_text(json.dumps({"profile": args.profile, "variants": list(runs), "safety": SAFETY,
                                                 "rows": rows}, indent=1, default=str) + "\n", encoding="utf-8")
    print(_format(rows))
    return 0 if all(r["sound"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
