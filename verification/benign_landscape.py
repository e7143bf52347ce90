r"""Claim ``benign-landscape`` (THEORY.md §10.2; Kim & Suzuki 2024, landscape theorem).

Every critical point is a global minimum or a strict saddle. On the orthogonal erf teacher
of THEORY.md §9 (``k° = k = M = 3``, ``d = 5``, exact expectations) critical points are
collected three ways and each is refined (Newton–Krylov) and classified with certificates
(:func:`landscape.classify.analyze`):

* end points of the Wasserstein gradient flow from Gaussian initialisations;
* the dead-neuron saddles of THEORY.md §9 (one and two dead neurons, identity and random
  invertible ``a``), each also perturbed by ``1e-3`` and refined back;
* Newton–Krylov from random measures. Newton is attracted to every kind of critical
  point, and also runs off to infinity: points with ``max |w| > W_MAX`` (saturated erf
  neurons, where the Hessian vanishes in every ``w`` direction) lie outside the bounded
  region the theorem analyses; they are counted and reported, not judged.

At every non-global critical point the flat curvature ``d²L(µ_s)/ds²`` towards the pushed
teacher is reported beside ``−4/(k R₁²)·L(µ)²`` (the second-hand constant, THEORY.md §7).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from landscape.classify import analyze
from landscape.measure import ParticleMeasure

from .baseline import Tolerance
from .parallel import TaskPool
from .profiles import Profile
from .records import ClaimResult, Metric, verdict_from_margin
from .scenarios import dead_neuron_saddle, landscape_of, orthogonal_teacher_problem, run_training, write_evidence

CLAIM_ID = "benign-landscape"
STATEMENT = "Every critical point of the attention landscape is a global minimum or a strict saddle (Kim & Suzuki 2024, THEORY.md §10.2)."
SCALE = 1.5
K0, D = 3, 5
#: critical points with a larger input weight are "at infinity" (outside the analysed region).
W_MAX = 10 * SCALE
TOLERANCES = {
    "degenerate_count": Tolerance(rtol=0.0, atol=0.5, bad="up"),
    "judged_count": Tolerance(rtol=0.5, atol=0.5, bad="down"),
    "worst_saddle_lambda": Tolerance(rtol=1e-3, atol=1e-8),
}
PROBLEM = orthogonal_teacher_problem(k0=K0, d=D, scale=SCALE)


def _classify(name: str, measure: ParticleMeasure) -> dict:
    landscape = landscape_of(PROBLEM)
    try:
        result = analyze(landscape, measure, refine_first=True)
    except ValueError as err:  # e.g. Σ_µµ singular after refinement
        return {"name": name, "classification": "refused", "note": str(err)}
    hess = result.hessian
    curvature = result.curvature
    w_max = float(np.abs(result.measure.w).max())
    return {
        "name": name,
        "classification": result.verdict,
        "in_region": w_max <= W_MAX,
        "w_max": w_max,
        "loss": result.evaluation.loss,
        "grad_norm": result.evaluation.grad_norm,
        "lambda_min": hess.lambda_min,
        "residual": float(hess.eigen.residuals[0]),
        "null_dim": hess.null.null_dim,
        "zero_count": hess.zero_count,
        "certified": bool(result.certificate and result.certificate["certified"]),
        "curvature_ratio": None if curvature is None else curvature.ratio,
        "bound": None if curvature is None else -curvature.bound_constant,
        "warnings": result.warnings,
    }


def _flow_end(directory: Path, seed: int, time: float) -> dict:
    run = run_training(
        directory,
        PROBLEM,
        {"kind": "gaussian", "particles": K0, "scale": 1.0, "seed": seed},
        {"time": time, "integrator": "dopri5", "rtol": 1e-8, "atol": 1e-12, "step_size": 0.1, "record_every": 10},
    )
    return _classify(f"flow end, seed {seed}", run.final)


def _constructed(dead: int, mix_seed: int | None, perturb_seed: int | None) -> dict:
    saddle = dead_neuron_saddle(K0, D, SCALE, dead=dead)
    a, w = saddle.a, saddle.w
    label = f"§9 saddle, {dead} dead"
    if mix_seed is not None:
        b = np.random.default_rng(mix_seed).standard_normal((K0, K0)) + 2 * np.eye(K0)
        a, label = a @ b.T, label + ", random a"
    if perturb_seed is not None:
        rng = np.random.default_rng(perturb_seed)
        a, w = a + 1e-3 * rng.standard_normal(a.shape), w + 1e-3 * rng.standard_normal(w.shape)
        label += ", perturbed 1e-3"
    return _classify(label, ParticleMeasure(a, w))


def _newton_start(seed: int) -> dict:
    rng = np.random.default_rng(1000 + seed)
    start = ParticleMeasure(rng.standard_normal((K0, K0)), SCALE * rng.standard_normal((K0, D)) / np.sqrt(D))
    return _classify(f"Newton from random, seed {seed}", start)


def check(profile: Profile, out: Path, pool: TaskPool) -> ClaimResult:
    """Collect, refine and classify critical points; judge the in-region ones."""
    tasks = [(_flow_end, (out / f"flow_{s}", s, profile.pick(150.0, 250.0))) for s in range(profile.seeds)]
    tasks += [(_constructed, (dead, mix, pert)) for dead in (1, 2) for mix, pert in ((None, None), (3, 4))]
    tasks += [(_newton_start, (s,)) for s in range(profile.pick(4, 12))]
    rows = pool.run(tasks)

    judged = [r for r in rows if r["classification"] not in ("not_critical", "refused") and r["in_region"]]
    at_infinity = [r for r in rows if r["classification"] not in ("not_critical", "refused") and not r["in_region"]]
    verdicts = [r["classification"] for r in judged]
    degenerate = sum(v in ("degenerate", "second_order_stationary") for v in verdicts)
    saddles = [r for r in judged if r["classification"] == "strict_saddle"]
    minima = [r for r in judged if r["classification"] == "global_minimum"]
    uncertified = sum(not r["certified"] for r in saddles)
    ratios = [r["curvature_ratio"] for r in saddles if r["curvature_ratio"] is not None]
    bound_violations = sum(r["curvature_ratio"] > r["bound"] for r in saddles if r["curvature_ratio"] is not None)

    metrics = {
        "judged_count": Metric(len(judged), 0.0, f"critical points found with max|w| ≤ {W_MAX:g}"),
        "degenerate_count": Metric(degenerate, 0.0, "in-region critical points neither global minima nor strict saddles"),
        "strict_saddle_count": Metric(len(saddles), 0.0, "certified or not"),
        "global_minimum_count": Metric(len(minima), 0.0, ""),
        "uncertified_saddles": Metric(uncertified, 0.0, "strict saddles whose eigen-interval or line search failed"),
        "at_infinity_count": Metric(len(at_infinity), 0.0, f"critical points with max|w| > {W_MAX:g} (not judged)"),
        "worst_saddle_lambda": Metric(
            max((r["lambda_min"] for r in saddles), default=float("nan")), 0.0, "largest λ_min among strict saddles"
        ),
        "curvature_bound_violations": Metric(bound_violations, 0.0, "saddles whose d²L/ds² / L² exceeds −4/(k R₁²)"),
        "worst_curvature_ratio": Metric(max(ratios, default=float("nan")), 0.0, "largest (d²L/ds²)/L(µ)² at strict saddles"),
    }
    passes = len(judged) > 0 and degenerate == 0 and uncertified == 0 and len(saddles) > 0 and len(minima) > 0
    fails = degenerate > 0
    points = [
        {
            "name": r["name"],
            "classification": r["classification"],
            "loss": r.get("loss"),
            "lambda_min": r.get("lambda_min"),
            "null_dim": r.get("null_dim"),
            "zero_count": r.get("zero_count"),
            "curvature_ratio": r.get("curvature_ratio"),
            "bound": r.get("bound"),
            "in_region": r.get("in_region"),
            "w_max": r.get("w_max"),
        }
        for r in rows
    ]
    evidence = [write_evidence(out, "critical_points.json", points)]
    return ClaimResult(
        id=CLAIM_ID,
        statement=STATEMENT,
        verdict=verdict_from_margin(passes, fails),
        metrics=metrics,
        threshold=(
            f"pass: every critical point with max|w| ≤ {W_MAX:g} is a global minimum or a certified strict saddle "
            "(at least one of each found); fail: any degenerate or second-order-stationary non-global point"
        ),
        evidence=evidence + [f"{out.name}/flow_0/run"],
        table=[
            {k: p[k] for k in ("name", "classification", "loss", "lambda_min", "zero_count", "curvature_ratio", "bound", "w_max")}
            for p in points
        ],
    )
