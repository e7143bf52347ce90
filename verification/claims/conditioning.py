"""Claim ``conditioning`` (docs/theory.md §10.5; Kim & Suzuki 2024, the λ-condition on Σ_µµ).

The landscape is only defined where ``Σ_µµ`` is invertible, and the paper's analysis assumes
``λ_min(Σ_µµ) ≥ λ > 0`` along the flow; it reports that in its experiments ``λ_min``
varied by at most 25% within each training phase.

Measured on the orthogonal erf teacher of docs/theory.md §9 with ``k° = k = 3``, ``d = 5`` and
``M = 6`` particles (so the student has spare neurons), teacher scale 3 (strongly
nonlinear features), from ``profile.seeds`` Gaussian initialisations of scale 0.5, integrated
as one ensemble (:func:`landscape.dynamics.simulate_ensemble`: each member equal to its own
``landscape train`` run to rounding; its files in ``seed_<s>/``, its run in ``seed_<s>/run``): along
each flow, ``λ_min(Σ_µµ)`` is read from the ``sigma_min`` column of ``trajectory.csv``
(every accepted step of an adaptive Dormand–Prince integrator), and we report

* ``min_t λ_min(t) / λ_min(0)`` (the verdict's quantity), and ``min_t λ_min/λ_max``
  against the singular threshold ``singular_rtol`` at which training stops;
* the paper's observation, as a separate result beside the verdict (not judged): the
  variation ``(max − min)/max`` of ``λ_min`` within each *phase* of training and the fraction
  of phases where it is at most 25%. Phases come from the one phase rule of
  :mod:`verification.analysis` — the same plateaus and phases the run reports draw — applied to
  each run's ``time``, ``loss``, ``grad_norm`` and ``sigma_min`` columns.

What is judged is the λ-condition of the paper's analysis (``λ_min`` bounded below along the
flow), not the 25% observation: the latter is a remark about the paper's large experiment, and
on these small runs the phases are few and the flow's first descent moves ``λ_min`` by far
more than 25% (the threshold text states how many phases meet it).
``λ_min(Σ_µµ)`` is not invariant under ``a ↦ B a`` (docs/theory.md §4), so it is judged relative
to its initial value, and its scale-free companion ``λ_min/λ_max`` against the threshold.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from landscape.cases import orthogonal_teacher_tables

from ..analysis import PAPER_VARIATION, find_phases, find_plateaus
from ..baseline import Tolerance
from ..parallel import TaskPool
from ..profiles import Profile
from ..records import ClaimResult, Metric
from ..rules import Claim, Rule, values_of
from ..scenarios import TrainingRun, ensemble_training, landscape_of, mean_and_stderr, write_evidence

__all__ = ["CLAIM_ID", "STATEMENT", "TOLERANCES", "check", "rules"]

CLAIM_ID = "conditioning"
STATEMENT = (
    "λ_min(Σ_µµ) stays bounded below along the Wasserstein gradient flow — the λ-condition of the paper's analysis, "
    "judged here; the paper's observation that it varied by at most 25% within each training phase is measured by the "
    "one phase rule and reported beside the verdict, not judged (Kim & Suzuki 2024, docs/theory.md §10.5)."
)
#: pass when ``min_t λ_min(t)/λ_min(0)`` stays above this in every run …
FLOOR_FRACTION = 0.1
#: … and fail when it falls below this in some run (or a run stops on a singular Σ_µµ).
FAIL_FRACTION = 0.01
#: pass also needs ``min_t λ_min/λ_max`` at least this many times the singular threshold.
SINGULAR_MARGIN = 1e3
#: pass also needs every flow to have trained: final L − L* at most this fraction of L(0).
TRAINED_FRACTION = 0.1

# Measured reproducibility, 2026-11-30 (`python -m verification.reproducibility`; quick: a repeat, 1 BLAS thread, 2
# torch threads, generic kernels, --jobs 2 and two rounding-noise runs; full: two rounding-noise runs): the largest
# spread of each metric over the variants, quick/full. Every compared tolerance allows at least 5x it (the thread
# and kernel variants alone move nothing beyond 1e-15 relative). min_ratio 1e-13/5e-14; worst_min_ratio 8e-14/8e-14;
# min_inverse_condition 4e-16/2e-16; paper_phase_fraction 0/0 (report-only); phases 0/0 (report-only);
# max_phase_variation 2e-12/6e-14 (report-only); max_plateau_variation 1e-11/- (report-only); plateaus 0/0 (report-
# only); final_gap_fraction 1e-14/1e-14.
TOLERANCES = {
    "min_ratio": Tolerance(rtol=0.2, atol=1e-3, bad="down"),
    "worst_min_ratio": Tolerance(rtol=0.2, atol=1e-3, bad="down"),
    "min_inverse_condition": Tolerance(rtol=0.5, atol=1e-6, bad="down"),
    "final_gap_fraction": Tolerance(rtol=1.0, atol=1e-4, bad="up"),
    # the paper's observation is reported, not judged: its phase counts jump when a plateau
    # appears or vanishes at the rule's edges, so these are shown and never compared
    "max_phase_variation": Tolerance(compare=False),
    "max_plateau_variation": Tolerance(compare=False),
    "paper_phase_fraction": Tolerance(compare=False),
    "phases": Tolerance(compare=False),
    "plateaus": Tolerance(compare=False),
}

PROBLEM = orthogonal_teacher_tables(neurons=3, dim=5, scale=3.0)
PARTICLES = 6
INIT_SCALE = 0.5
FLOW = {"integrator": "dopri5", "rtol": 1e-6, "atol": 1e-9, "step_size": 0.1, "record_every": 1}


def rules() -> Claim:
    """Pass: every flow completes and trains with λ_min(Σ_µµ) bounded below; fail: a singular stop or a collapse of λ_min."""
    return Claim(
        passes=(
            Rule("incomplete_runs", "==", 0, label="runs not completed"),
            Rule("worst_min_ratio", ">=", FLOOR_FRACTION),
            Rule("min_inverse_condition", ">=", "singular_rtol", scale=SINGULAR_MARGIN),
            Rule("final_gap_fraction", "<=", TRAINED_FRACTION),
        ),
        fails=(
            Rule("singular_runs", ">", 0, label="runs stopped on a singular Σ_µµ"),
            Rule("worst_min_ratio", "<", FAIL_FRACTION),
        ),
    )


def _flows(out: Path, seeds: range, time: float) -> list[TrainingRun]:
    """One flow per seed, all integrated as one ensemble; member ``s``'s files in ``out/seed_s``."""
    inits = [{"kind": "gaussian", "particles": PARTICLES, "scale": INIT_SCALE, "seed": s} for s in seeds]
    return ensemble_training([out / f"seed_{s}" for s in seeds], PROBLEM, inits, {**FLOW, "time": time})


def _summary(run: TrainingRun, seed: int, singular_rtol: float) -> dict:
    """The λ_min record of one flow: its extremes, its end, and its phases (one phase rule)."""
    tr = run.trajectory
    lam, loss, t = tr["sigma_min"], tr["loss"], tr["time"]
    inverse_condition = 1.0 / tr["sigma_cond"]
    plateaus = find_plateaus(t, loss, tr["grad_norm"])
    kicks = sorted({int(np.searchsorted(t, when)) for when, event in run.events if event.startswith("kick")})
    kinds = {(pl.start, pl.stop): "settled" if pl.final else "plateau" for pl in plateaus}
    rows = [
        {
            "kind": kinds.get((ph.start, ph.stop), "descent"),
            "t_start": ph.t_start,
            "t_end": ph.t_stop,
            "loss_start": float(loss[ph.start]),
            "loss_end": float(loss[ph.stop]),
            "lambda_min_low": ph.sigma_lo,
            "lambda_min_high": ph.sigma_hi,
            "variation": ph.variation,
        }
        for ph in find_phases(t, lam, plateaus, kicks)
    ]
    return {
        "seed": seed,
        "status": run.result.status,
        "time": float(t[-1]),
        "loss_initial": float(loss[0]),
        "gap": float(run.result.loss),
        "lambda_min_initial": float(lam[0]),
        "lambda_min_lowest": float(lam.min()),
        "lambda_min_final": float(lam[-1]),
        "time_of_lowest": float(t[int(np.argmin(lam))]),
        "min_ratio": float(lam.min() / lam[0]),
        "min_inverse_condition": float(inverse_condition.min()),
        "singular_rtol": singular_rtol,
        "phases": rows,
    }


def check(profile: Profile, out: Path, pool: TaskPool) -> ClaimResult:
    """Train from ``profile.seeds`` initialisations and judge ``λ_min(Σ_µµ)`` along each flow.

    The seeds run as one ensemble in this process, so ``pool`` (the claims' common signature) is not used."""
    time = profile.pick(20.0, 100.0)
    singular_rtol = float(landscape_of(PROBLEM).singular_rtol)
    seeds = range(profile.seeds)
    runs = [_summary(run, s, singular_rtol) for run, s in zip(_flows(out, seeds, time), seeds, strict=True)]
    ratios = [r["min_ratio"] for r in runs]
    all_phases = [ph for r in runs for ph in r["phases"]]
    variations = [ph["variation"] for ph in all_phases]
    plateau_var = [ph["variation"] for ph in all_phases if ph["kind"] == "plateau"]
    within = sum(v <= PAPER_VARIATION for v in variations)
    gap_fraction = max(r["gap"] / r["loss_initial"] for r in runs)
    min_inv_cond = min(r["min_inverse_condition"] for r in runs)
    ratio_mean, ratio_err = mean_and_stderr(ratios)
    metrics = {
        "min_ratio": Metric(ratio_mean, ratio_err, "min over the run of λ_min(Σ_µµ)/λ_min at t = 0, mean over seeds"),
        "worst_min_ratio": Metric(min(ratios), 0.0, "smallest min_t λ_min(t)/λ_min(0) over seeds"),
        "min_inverse_condition": Metric(min_inv_cond, 0.0, f"smallest λ_min/λ_max along any run (training stops below {singular_rtol:g})"),
        "paper_phase_fraction": Metric(
            within / len(variations) if variations else math.nan,
            0.0,
            f"the paper's observation, not judged: fraction of phases (one phase rule, verification.analysis) whose "
            f"λ_min(Σ_µµ) varies by ≤ {PAPER_VARIATION:.0%} (n/a: no phase of two rows)",
            applicable=bool(variations),
        ),
        "phases": Metric(float(len(variations)), 0.0, "phases over all runs (plateaus, settled stretches and the stretches between)"),
        "max_phase_variation": Metric(
            max(variations, default=math.nan), 0.0, "largest (max − min)/max of λ_min within one phase, any run", applicable=bool(variations)
        ),
        "max_plateau_variation": Metric(
            max(plateau_var) if plateau_var else math.nan,
            0.0,
            "largest (max − min)/max of λ_min within one plateau (n/a: no plateau found)",
            applicable=bool(plateau_var),
        ),
        "plateaus": Metric(float(len(plateau_var)), 0.0, "plateaus found over all runs (not counting settled stretches)"),
        "final_gap_fraction": Metric(gap_fraction, 0.0, "largest final (L − L*)/L(0) over runs: the flows did train"),
    }
    claim = rules()
    values = values_of(
        metrics,
        incomplete_runs=sum(r["status"] != "completed" for r in runs),
        singular_runs=sum(r["status"] == "singular" for r in runs),
        singular_rtol=singular_rtol,
    )
    evidence = [write_evidence(out, "runs.json", runs)]
    table = [
        {
            "seed": r["seed"],
            "phase": f"{ph['kind']} t∈[{ph['t_start']:.3g}, {ph['t_end']:.3g}]",
            "loss": f"{ph['loss_start']:.3g} → {ph['loss_end']:.3g}",
            "λ_min range": f"[{ph['lambda_min_low']:.3g}, {ph['lambda_min_high']:.3g}]",
            "variation": ph["variation"],
            f"≤ {PAPER_VARIATION:.0%}": ph["variation"] <= PAPER_VARIATION,
        }
        for r in runs
        for ph in r["phases"]
    ]
    return ClaimResult(
        id=CLAIM_ID,
        statement=STATEMENT,
        verdict=claim.verdict(values),
        metrics=metrics,
        threshold=claim.threshold(
            context=f"singular_rtol = {singular_rtol:g}",
            note=(
                f"Not judged — the paper's observation (λ_min varies by ≤ {PAPER_VARIATION:.0%} within each phase): holds in "
                f"{within} of {len(variations)} phases ({within / max(len(variations), 1):.0%})"
            ),
        ),
        evidence=evidence + [f"{out.name}/seed_{s}/run" for s in range(profile.seeds)],
        table=table,
    )

