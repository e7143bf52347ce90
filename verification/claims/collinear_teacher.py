r"""Extra check ``collinear-teacher``: teacher neurons made nearly collinear (docs/theory.md §4, §10 open questions).

Teacher: erf, ``k° = L = 2``, ``c = I``, ``u_1 = s e_1``, ``u_2 = s(cos α e_1 + sin α e_2)``,
``s = 1.5``, ``d = 3``, ``τ = 0.1``. As ``α → 0`` the two true features become nearly
collinear: ``λ_min(Σ_°°) → 0`` (like ``α²``), and the paper's standing assumption
``λ_min(Σ_µµ) ≥ λ > 0`` degrades along with it, because every measure that reaches the floor
spans the same two features. Per angle we train the MLP (``M = k = 2``) from Gaussian starts
for a fixed time and report:

* the final unexplained fraction ``(L_∞ − ½τ²)/(½ tr Σ_°°)`` and the time the flow first
  got below ``10⁻³`` of it; that criterion is met at small angles without learning the weak
  direction (its variance is ``λ_min(Σ_°°) ∝ α²``), so also the *weak-direction residual*
  ``(L_∞ − ½τ²)/(½ λ_min(Σ_°°))`` (about 1: the weakest teacher direction is not learned;
  the verdict uses this one);
* ``λ_min(Σ_°°)`` of the teacher and ``λ_min(Σ_µµ)``, ``cond(Σ_µµ)`` of the trained measure
  (not GL(k)-invariant, hence also the invariant ``λ_min`` of the teacher);
* the finite-prompt ICL error ``L_N − ½τ²`` at ``N = 50`` at the global minimum (the teacher
  itself; ``L_N`` is GL(k)-invariant, so every global minimiser, whose features span ``f°``,
  has the same value) and the ratio ``R = ‖K_µ‖/λ_min(Σ_µ°Σ_°µ)`` there: the prompt length
  beyond which ``L_N ≈ L_∞`` (docs/theory.md §4: ``A_N = (1 − 1/N) Σ_µ°Σ_°µ + K_µ/N``).

Fitted exponents of ``λ_min(Σ_°°)``, ``R`` and the ICL error against ``α`` are reported.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from landscape.io.problem import parse_problem
from landscape.landscape import AttentionLandscape

from ..analysis import fit_power, relative_excess
from ..baseline import Tolerance
from ..comparators import signal
from ..parallel import TaskPool
from ..profiles import Profile
from ..records import ClaimResult, Metric
from ..rules import Claim, Rule, values_of
from ..scenarios import run_training, write_evidence

CLAIM_ID = "collinear-teacher"
STATEMENT = (
    "As the teacher neurons become collinear (angle α → 0), λ_min(Σ_°°) → 0 like α²; at N = ∞ the flow should still "
    "reach the noise floor. Reported: how fast it does, λ_min(Σ_µµ) of the trained measure, and the finite-N "
    "in-context error at the global minimum (docs/theory.md §4, §10 open questions)."
)
SCALE = 1.5
NOISE = 0.1
PROMPT_LENGTH = 50
REACH_TOL = 1e-3
FAIL_TOL = 1e-2
#: a run has learned the weakest teacher direction when its weak-direction residual is below this.
WEAK_TOL = 1e-2
#: angles at or above this (degrees) must reach the floor, or the check fails.
MUST_REACH_DEG = 30.0
#: Every metric has its own tolerance. Deterministic ones (exact expectations; Q_µ on a fixed
#: seeded sample) move only by rounding and get tight two-sided ones; the flow outcomes
#: (fractions, residuals, the largest unlearned angle) count only when they get worse; a
#: better flow is not a regression.
# Measured reproducibility, 2026-11-30 (`python -m verification.reproducibility`; quick: a repeat, 1 BLAS thread, 2
# torch threads, generic kernels, --jobs 2 and two rounding-noise runs; full: two rounding-noise runs): the largest
# spread of each metric over the variants, quick/full. Every compared tolerance allows at least 5x it (the thread
# and kernel variants alone move nothing beyond 1e-15 relative). worst_unexplained 7e-16/1e-15; reached_fraction
# 0/0; worst_weak_residual 5e-13/6e-12; learned_fraction 0/0; largest_unlearned_angle 0/0; sigma_tt_slope
# 8e-14/3e-13; ratio_slope 1e-14/6e-10; icl_error_slope 7e-13/5e-13; smallest_angle_sigma_min 2e-16/2e-16.
TOLERANCES = {
    "sigma_tt_slope": Tolerance(rtol=0.0, atol=0.05),
    "worst_unexplained": Tolerance(rtol=1.0, atol=1e-5, bad="up"),
    "reached_fraction": Tolerance(rtol=0.0, atol=0.01, sigmas=0.0, bad="down"),
    "worst_weak_residual": Tolerance(rtol=0.5, atol=1e-3, sigmas=0.0, bad="up"),
    "learned_fraction": Tolerance(rtol=0.0, atol=0.01, sigmas=0.0, bad="down"),
    "largest_unlearned_angle": Tolerance(rtol=0.0, atol=0.5, sigmas=0.0, bad="up"),
    "ratio_slope": Tolerance(rtol=1e-4, atol=1e-6),
    "icl_error_slope": Tolerance(rtol=1e-4, atol=1e-6),
    "smallest_angle_sigma_min": Tolerance(rtol=1e-8, atol=1e-14),
}
FLOW = {"integrator": "dopri5", "rtol": 1e-6, "atol": 1e-10, "step_size": 0.1, "record_every": 2}


def rules() -> Claim:
    """Pass: every run learns the weakest teacher direction; fail: a run stops, or a wide-angle run misses the floor."""
    return Claim(
        passes=(
            Rule("stopped_runs", "==", 0, label="runs stopped (singular Σ_µµ)"),
            Rule("worst_weak_residual", "<=", WEAK_TOL),
        ),
        fails=(
            Rule("stopped_runs", ">", 0, label="runs stopped (singular Σ_µµ)"),
            Rule("wide_angle_unexplained", ">", FAIL_TOL, label=f"largest unexplained fraction at α ≥ {MUST_REACH_DEG:g}°"),
        ),
    )


def problem(angle_deg: float) -> dict:
    alpha = math.radians(angle_deg)
    u = SCALE * np.array([[1.0, 0.0, 0.0], [math.cos(alpha), math.sin(alpha), 0.0]])
    return {
        "input": {"law": "gaussian", "dim": 3},
        "teacher": {"activation": "erf", "c": np.eye(2).tolist(), "u": u.tolist()},
        "model": {"activation": "erf", "features": 2},
        "task": {"noise": NOISE, "prompt_length": "inf"},
        "expectation": {"method": "exact"},
    }


def _at_teacher(landscape: AttentionLandscape) -> dict:
    """ICL error at ``N = PROMPT_LENGTH`` and ``R`` at the teacher measure (a global minimiser)."""
    teacher = landscape.teacher
    m = teacher.neurons
    a = torch.as_tensor(teacher.c * m)  # weights 1/m: h = Σ (1/m) (m c_l) σ(u_l·x) = f°
    w = torch.as_tensor(teacher.u)
    p = torch.full((m,), 1.0 / m, dtype=torch.float64)
    finite = AttentionLandscape(teacher, landscape.expectation, noise=NOISE, prompt_length=PROMPT_LENGTH)
    with torch.no_grad():
        loss_n = float(finite.loss(a, w, p))
        mom = finite.moments(a, w, p)
        k_mu = (mom.fourth + NOISE**2 * mom.sigma_mm).numpy()
        b = (mom.sigma_mt @ mom.sigma_mt.T).numpy()
    return {"icl_error": loss_n - 0.5 * NOISE**2, "ratio": float(np.linalg.norm(k_mu, 2) / np.linalg.eigvalsh(b)[0])}


def _task(directory: Path, angle: float, seed: int, time: float) -> dict:
    spec = problem(angle)
    landscape = parse_problem(spec).landscape()
    sigma_tt = landscape.expectation.sigma_tt.numpy()
    run = run_training(directory, spec, {"kind": "gaussian", "particles": 2, "scale": 1.0, "seed": seed}, {**FLOW, "time": time})
    row = {"angle_deg": angle, "seed": seed, "status": run.result.status, "teacher_sigma_min": float(np.linalg.eigvalsh(sigma_tt)[0])}
    traj = run.trajectory
    hit = np.nonzero(relative_excess(traj["loss"], NOISE, float(np.trace(sigma_tt))) <= REACH_TOL)[0]
    row["time_to_reach"] = float(traj["time"][hit[0]]) if hit.size else None
    if run.final is None:
        return {**row, "unexplained": math.nan}
    a, w, p = run.final.tensors()
    with torch.no_grad():
        loss = float(landscape.loss_inf(a, w, p))
    lam, cond = landscape.conditioning(run.final)
    row.update(unexplained=relative_excess(loss, landscape.noise, signal(landscape)), sigma_min=lam, sigma_cond=cond, **_at_teacher(landscape),
               weak_residual=relative_excess(loss, NOISE, row["teacher_sigma_min"]))
    return row


def check(profile: Profile, out: Path, pool: TaskPool) -> ClaimResult:
    """Train at each angle; tabulate the degradation; fit exponents; judge reachability of the floor."""
    angles = profile.pick([90.0, 30.0, 10.0, 3.0], [90.0, 30.0, 15.0, 8.0, 4.0, 2.0, 1.0])
    # λ_min(Σ_°°) and the teacher quantities are deterministic per angle; the flow is per seed
    seeds = range(profile.pick(1, 2))
    time = profile.pick(200.0, 400.0)
    rows = pool.run([(_task, (out / f"angle_{a:g}_seed{s}", a, s, time)) for a in angles for s in seeds])
    finite = [r for r in rows if math.isfinite(r["unexplained"])]
    small = [r for r in finite if r["angle_deg"] <= 30.0]
    alphas = [math.radians(r["angle_deg"]) for r in small]
    tt_slope, _, _ = fit_power(alphas, [r["teacher_sigma_min"] for r in small])
    ratio_slope, _, _ = fit_power(alphas, [r["ratio"] for r in small])
    icl_slope, _, _ = fit_power(alphas, [r["icl_error"] for r in small])
    worst = max((r["unexplained"] for r in rows), default=math.nan)
    reached = [r["unexplained"] <= REACH_TOL for r in rows]
    weak = [r.get("weak_residual", math.nan) for r in rows]
    learned = [w <= WEAK_TOL for w in weak]
    unlearned = [r["angle_deg"] for r, ok in zip(rows, learned, strict=True) if not ok]
    metrics = {
        "worst_unexplained": Metric(worst, 0.0, f"largest final unexplained fraction over angles (t = {time:g})"),
        "reached_fraction": Metric(float(np.mean(reached)), 0.0, f"fraction of runs with unexplained ≤ {REACH_TOL:g}"),
        "worst_weak_residual": Metric(float(np.nanmax(weak)), 0.0, "largest (L_∞ − ½τ²)/(½ λ_min(Σ_°°)) (≈ 1: weak direction unlearned)"),
        "learned_fraction": Metric(float(np.mean(learned)), 0.0, f"fraction of runs with weak-direction residual ≤ {WEAK_TOL:g}"),
        "largest_unlearned_angle": Metric(max(unlearned, default=0.0), 0.0, "largest angle (deg) with the weak direction unlearned"),
        "sigma_tt_slope": Metric(tt_slope, 0.0, "slope of log λ_min(Σ_°°) vs log α, α ≤ 30° (predicted 2)"),
        "ratio_slope": Metric(ratio_slope, 0.0, "slope of log R = ‖K_µ‖/λ_min(Σ_µ°Σ_°µ) vs log α at the global minimum"),
        "icl_error_slope": Metric(icl_slope, 0.0, f"slope of log(L_{PROMPT_LENGTH} − ½τ²) vs log α at the global minimum"),
        "smallest_angle_sigma_min": Metric(
            min(r["teacher_sigma_min"] for r in rows), 0.0, f"λ_min(Σ_°°) at the smallest angle ({min(angles):g}°)"
        ),
    }
    must = [r for r in rows if r["angle_deg"] >= MUST_REACH_DEG]
    claim = rules()
    values = values_of(metrics, stopped_runs=len(rows) - len(finite),
                       wide_angle_unexplained=max((r["unexplained"] for r in must), default=math.nan))
    table = [
        {"angle (deg)": r["angle_deg"], "seed": r["seed"], "λ_min(Σ_°°)": r["teacher_sigma_min"], "unexplained (N=∞)": r["unexplained"],
         "time to 1e-3": r["time_to_reach"], "weak-direction residual": r.get("weak_residual"),
         "λ_min(Σ_µµ)": r.get("sigma_min"), "cond(Σ_µµ)": r.get("sigma_cond"),
         f"L_{PROMPT_LENGTH} − ½τ²": r.get("icl_error"), "R": r.get("ratio")}
        for r in rows
    ]
    return ClaimResult(
        id=CLAIM_ID,
        statement=STATEMENT,
        verdict=claim.verdict(values),
        metrics=metrics,
        threshold=claim.threshold(context=f"N = ∞, t = {time:g}", note="The slopes are reported, not judged"),
        evidence=[write_evidence(out, "collinear_teacher.json", rows)],
        table=table,
    )

