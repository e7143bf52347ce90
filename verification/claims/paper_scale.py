"""Claim ``paper-scale`` (docs/theory.md §10, claim 5; Kim & Suzuki 2024, their experiment, §6).

The paper reports from its one experiment (d = 20, k = 5, 500 sigmoid neurons) that
``λ_min(Σ_µµ)`` "varied by at most 25% within each training phase". The ``conditioning`` claim
measures that on toys (M = 6) where the loss shows no staircase; this claim judges it on the
paper's own scenario.

**Full profile**: ``landscape/examples/paper.toml`` as shipped — d = 20, k = 5, M = 500 sigmoid
particles from a Gaussian draw of scale 0.5 (seed 0), exact expectations with Mehler order 32,
``N = ∞``, ``rosenbrock23`` (rtol 1e-3) to ``t = 12``. The teacher is not given in the paper; the
file's five sigmoid neurons ``u_l = 3 e_l`` with output weights ``c = diag(1, 0.8, 0.6, 0.4, 0.2)``
are our choice (the features are then learned one after another). **Quick profile**: the same
teacher structure (``u_l = 3 e_l``, ``c = diag(linspace(1, 0.2, k))``) at d = 6, k = 3, M = 40, to
``t = 3``, with ``erf`` in place of the sigmoid: a sigmoid-shaped activation whose closed-form
kernel takes the fast field of :mod:`landscape.dynamics.fast_field` (the sigmoid goes through the
Mehler series, ≈ 160 CPU s at this size, far over a quick check's budget).

The flow is trained with :func:`landscape.dynamics.train` into the evidence folder. Its
``trajectory.csv`` is cut into phases by the one phase rule of :mod:`verification.analysis`
(:func:`~verification.analysis.find_plateaus`, :func:`~verification.analysis.find_phases`: the
plateaus and the stretches between their ends, the same phases the run report draws and the
``conditioning`` claim counts). Per phase the table gives its kind (plateau, descent, settled),
entry and exit time, the loss at both ends and its level (median over the phase's rows), the
range of ``λ_min(Σ_µµ)`` and its variation ``(max − min)/max`` — the paper's measure.

**Verdict** on the paper's statement, every detected phase counted:

* pass: the run completed, at least two phases were found, and every phase varies by at most
  :data:`~verification.analysis.PAPER_VARIATION` (25%);
* fail: the run stopped, or the *interior* of some phase — its middle half in time
  (:data:`INTERIOR_TRIM` cut at each end) — varies by more than :data:`FAIL_VARIATION` (50%,
  i.e. ``max/min > 2``): twice the paper's bound where no phase edge can reach. A phase's
  edges come from the rule's windows (2–3% of the run), so a whole phase can take in the
  first or last rows of a neighbouring drop, where ``λ_min`` moves fast; a verdict that
  changed with where the edges fall would judge the rule, not the statement. So a whole-phase
  variation above 25% with calm interiors is inconclusive, and the interiors are reported;
* inconclusive otherwise, and always when fewer than two phases are detected (no staircase:
  the statement is about phases, and one phase spanning the run says nothing about them).

The largest variation within plateaus alone (not counting descents) is reported beside the
verdict, not judged.

Measured (2026-11-30, full profile, 84 steps, 373 field evaluations, 4 954 Jacobian-vector
products; 206 CPU s on one core of the loaded 2-core box): **fail**. The rule finds three
plateaus (levels 0.0196, 0.0106, 0.0057, left at t = 1.41, 3.39, 5.16) and seven phases, none
within 25%: λ_min varies by 31% in the first descent, 55%, 58% and 31% on the plateaus (it
climbs back from each drop's dip while the loss stalls: 9.8e-7 → 2.3e-6 on the second) and
60%, 76%, 78% in the later descents, where it dips to ≈ 4–5e-7. Quick profile: one plateau,
three phases (13%, 6%, 41%): inconclusive, in 2.5 s.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import landscape
from landscape.io.files import read_toml

from ..analysis import PAPER_VARIATION, find_phases, find_plateaus
from ..baseline import Tolerance
from ..parallel import TaskPool
from ..profiles import Profile
from ..records import ClaimResult, Metric
from ..rules import Claim, Rule, values_of
from ..scenarios import run_training, write_evidence

__all__ = ["CLAIM_ID", "STATEMENT", "TOLERANCES", "check", "rules", "scenario", "PAPER_PROBLEM", "FAIL_VARIATION"]

CLAIM_ID = "paper-scale"
STATEMENT = (
    "At the paper's scale (d = 20, k = 5, 500 sigmoid neurons, exact expectations, N = ∞) the loss falls as a "
    "staircase of plateaus, and λ_min(Σ_µµ) varies by at most 25% within each training phase (Kim & Suzuki 2024, "
    "their experiment; docs/theory.md §10, claim 5)."
)
#: fail when the interior of some phase varies by more than this (max/min > 2: twice the paper's 25%).
FAIL_VARIATION = 0.5
#: the fraction of a phase's duration cut at each end to form its interior (the middle half).
INTERIOR_TRIM = 0.25

# Measured reproducibility (`python -m verification.reproducibility --profile quick --claims paper-scale`, all eight
# variants incl. two rounding-noise runs, 2026-11-30): largest spreads max_phase_variation 8e-15,
# first_plateau_level 5e-16, first_plateau_exit 2e-14, final_loss 4e-16; every compared tolerance allows > 1e12x that
# (the full profile, one 206-CPU-second run, was not repeated under the variants). The phase and plateau counts jump
# when a plateau appears or vanishes at the rule's edges, so they are shown and never compared.
TOLERANCES = {
    "max_phase_variation": Tolerance(rtol=0.2, atol=1e-3, bad="up"),
    "max_interior_variation": Tolerance(rtol=0.2, atol=1e-3, bad="up"),
    "final_loss": Tolerance(rtol=0.1, atol=1e-6, bad="up"),
    "first_plateau_level": Tolerance(rtol=0.1, atol=1e-6, bad="either"),
    "first_plateau_exit": Tolerance(rtol=0.2, atol=1e-2, bad="either"),
    "max_plateau_variation": Tolerance(compare=False),
    "paper_phase_fraction": Tolerance(compare=False),
    "phases": Tolerance(compare=False),
    "plateaus": Tolerance(compare=False),
}

#: the paper's scenario as shipped (the full profile's problem, initial measure and flow).
PAPER_PROBLEM = Path(landscape.__file__).parent / "examples" / "paper.toml"
#: the quick profile's size (d, k, M), activation and horizon.
QUICK = {"dim": 6, "features": 3, "particles": 40, "activation": "erf", "time": 3.0}


def rules() -> Claim:
    """Pass: the run completes with ≥ 2 phases, each within 25%; fail: the run stops or a phase's interior varies by > 50%."""
    return Claim(
        passes=(
            Rule("incomplete_runs", "==", 0, label="runs not completed"),
            Rule("phases", ">=", 2),
            Rule("max_phase_variation", "<=", PAPER_VARIATION),
        ),
        fails=(
            Rule("incomplete_runs", ">", 0, label="runs not completed"),
            Rule("max_interior_variation", ">", FAIL_VARIATION),
        ),
    )


def scenario(profile: Profile) -> dict[str, Any]:
    """The tables of the profile's scenario: ``problem`` (input, teacher, model, task, expectation), ``init``, ``dynamics``.

    Full: ``paper.toml`` as shipped. Quick: the same teacher structure at :data:`QUICK`'s size (module docstring).
    """
    paper = read_toml(PAPER_PROBLEM, "problem")
    init, dynamics = paper.pop("init"), paper.pop("dynamics")
    if profile.name != "quick":
        return {"problem": paper, "init": init, "dynamics": dynamics}
    d, k, act = QUICK["dim"], QUICK["features"], QUICK["activation"]
    problem = {
        **paper,
        "input": {**paper["input"], "dim": d},
        "teacher": {"activation": act, "c": np.diag(np.linspace(1.0, 0.2, k)).tolist(), "u": (3.0 * np.eye(d)[:k]).tolist()},
        "model": {"activation": act, "features": k},
    }
    return {
        "problem": problem,
        "init": {**init, "particles": QUICK["particles"]},
        "dynamics": {**dynamics, "time": QUICK["time"]},
    }


def _flow(directory: Path, tables: dict[str, Any]) -> dict[str, Any]:
    """Train the scenario into ``directory/run``; its phases (one phase rule) with λ_min's range and the loss per phase.

    The run holds numba and the BLAS/OpenMP pools to one thread each (restored after), as the
    task pool holds torch (:func:`verification.parallel.single_thread`): at M = 500 the Mehler
    series takes numba's parallel path, and idle pools spin on a loaded machine (measured on the
    2-core box under load: 5.4 CPU min for the first 30 steps with the default pools, 0.65 with
    ``OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1``).
    """
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(1):
            run = run_training(directory, tables["problem"], tables["init"], tables["dynamics"])
    finally:
        numba.set_num_threads(threads)
    tr = run.trajectory
    t, loss, lam = tr["time"], tr["loss"], tr["sigma_min"]
    plateaus = find_plateaus(t, loss, tr["grad_norm"])
    kinds = {(p.start, p.stop): "settled" if p.final else "plateau" for p in plateaus}
    phases = [
        {
            "kind": kinds.get((ph.start, ph.stop), "descent"),
            "t_entry": ph.t_start,
            "t_exit": ph.t_stop,
            "loss_entry": float(loss[ph.start]),
            "loss_exit": float(loss[ph.stop]),
            "level": float(np.median(loss[ph.start : ph.stop + 1])),
            "lambda_min_low": ph.sigma_lo,
            "lambda_min_high": ph.sigma_hi,
            "variation": ph.variation,
            "interior_variation": _interior_variation(t, lam, ph.t_start, ph.t_stop),
        }
        for ph in find_phases(t, lam, plateaus)
    ]
    return {
        "status": run.result.status,
        "time": float(t[-1]),
        "steps": run.result.steps,
        "loss_initial": float(loss[0]),
        "loss_final": float(loss[-1]),
        "phases": phases,
    }


def _interior_variation(t: np.ndarray, lam: np.ndarray, start: float, stop: float) -> float:
    """``(max − min)/max`` of ``lam`` over the rows of ``t`` in the middle of ``[start, stop]``
    (:data:`INTERIOR_TRIM` of its length cut at each end); NaN (not measurable) with fewer than two rows there.

    Args:
        t, lam: arrays of shape (R,), the recorded times and ``λ_min(Σ_µµ)``.
    """
    cut = INTERIOR_TRIM * (stop - start)
    inside = lam[(t >= start + cut) & (t <= stop - cut)]
    if inside.size < 2:
        return math.nan
    return float((inside.max() - inside.min()) / inside.max())


def check(profile: Profile, out: Path, pool: TaskPool) -> ClaimResult:
    """Train the profile's scenario once and judge the paper's 25% statement on every phase of its staircase."""
    tables = scenario(profile)
    (run,) = pool.run([(_flow, (out / "scenario", tables))])
    phases = run["phases"]
    variations = [ph["variation"] for ph in phases]
    plateau_rows = [ph for ph in phases if ph["kind"] == "plateau"]
    staircase = len(phases) >= 2
    within = sum(v <= PAPER_VARIATION for v in variations)
    first = plateau_rows[0] if plateau_rows else None
    metrics = {
        "max_phase_variation": Metric(
            max(variations, default=math.nan), 0.0,
            "largest (max − min)/max of λ_min(Σ_µµ) within one phase (the verdict's quantity; n/a: fewer than 2 phases)",
            applicable=staircase,
        ),
        "max_interior_variation": Metric(
            max((v for ph in phases if math.isfinite(v := ph["interior_variation"])), default=math.nan), 0.0,
            "largest (max − min)/max of λ_min over the middle half of one phase (the fail rule's quantity; phases "
            "with fewer than two rows there are not counted)",
            applicable=staircase and any(math.isfinite(ph["interior_variation"]) for ph in phases),
        ),
        "max_plateau_variation": Metric(
            max((ph["variation"] for ph in plateau_rows), default=math.nan), 0.0,
            "largest (max − min)/max of λ_min within one plateau (not judged; n/a: no plateau)",
            applicable=bool(plateau_rows),
        ),
        "paper_phase_fraction": Metric(
            within / len(variations) if variations else math.nan, 0.0,
            f"fraction of phases whose λ_min varies by ≤ {PAPER_VARIATION:.0%}", applicable=bool(variations),
        ),
        "phases": Metric(float(len(phases)), 0.0, "phases found by the one phase rule (plateaus, settled stretch, descents)"),
        "plateaus": Metric(float(len(plateau_rows)), 0.0, "plateaus passed (not counting a settled final stretch)"),
        "first_plateau_level": Metric(
            first["level"] if first else math.nan, 0.0, "median loss on the first plateau (n/a: no plateau)", applicable=first is not None
        ),
        "first_plateau_exit": Metric(
            first["t_exit"] if first else math.nan, 0.0, "time the first plateau is left (n/a: no plateau)", applicable=first is not None
        ),
        "final_loss": Metric(run["loss_final"], 0.0, f"L(µ_T) at T = {run['time']:g} (L(µ_0) = {run['loss_initial']:.4g})"),
    }
    claim = rules()
    values = values_of(metrics, incomplete_runs=int(run["status"] != "completed"))
    table = [
        {
            "phase": f"{ph['kind']} t∈[{ph['t_entry']:.3g}, {ph['t_exit']:.3g}]",
            "entry": ph["t_entry"],
            "exit": ph["t_exit"],
            "loss": f"{ph['loss_entry']:.3g} → {ph['loss_exit']:.3g}",
            "level": ph["level"],
            "λ_min range": f"[{ph['lambda_min_low']:.3g}, {ph['lambda_min_high']:.3g}]",
            "variation": ph["variation"],
            "interior variation": ph["interior_variation"],
            f"≤ {PAPER_VARIATION:.0%}": ph["variation"] <= PAPER_VARIATION,
        }
        for ph in phases
    ]
    size = "d = {dim}, k = {features}, M = {particles}".format(
        dim=tables["problem"]["input"]["dim"], features=tables["problem"]["model"]["features"], particles=tables["init"]["particles"]
    )
    context = (
        f"{size}, {tables['problem']['model']['activation']}, rosenbrock23 to t = {tables['dynamics']['time']:g}; "
        f"every phase of the one phase rule counted; fail when a phase's middle half varies by more than "
        f"{FAIL_VARIATION:.0%} (max/min > 2)"
    )
    return ClaimResult(
        id=CLAIM_ID,
        statement=STATEMENT,
        verdict=claim.verdict(values),
        metrics=metrics,
        threshold=claim.threshold(
            context=context,
            note=f"{within} of {len(phases)} phases within {PAPER_VARIATION:.0%}; {run['steps']} steps, status {run['status']}",
        ),
        evidence=[write_evidence(out, "phases.json", run), f"{out.name}/scenario/run"],
        table=table,
    )
