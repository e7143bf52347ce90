r"""Extra check ``escape-vs-dimension``: saddle-escape time as ``d`` grows (THEORY.md §9, §10 open questions).

The dead-neuron saddle of THEORY.md §9 (orthogonal erf teacher, ``k° = k = M = 2``, ``s = 1.5``,
``τ = 0``, one neuron dead at ``s e_3``) embedded in ``d`` dimensions; the flow starts exactly
on it and gets one isotropic kick of fixed radius ``r = 10⁻⁴`` (each particle displaced
uniformly in the ball of ``R^{k+d}``). Escape time: from the kick until ``L`` falls below half
the saddle's loss. Repeated over kick draws (the run's seed) and averaged per ``d``.

The kick is drawn here (:func:`landscape.dynamics.perturbation.isotropic_kick`, seeded) and
the flow starts from the kicked measure, so the kick's component along the unstable field
``ψ0`` (unit in ``L²(µ)``), ``c = |⟨ψ0, δ⟩_µ|``, is known for every run.

Prediction (linearisation at a strict saddle): the unstable component grows like
``c e^{|λ_min| t}``, so ``T = C − log(c)/|λ_min|`` with one constant ``C`` for every kick and
every ``d`` (``ψ0`` does not depend on ``d``: the coordinates beyond ``e_3`` are symmetric).
Per run we check that ``T + log(c)/|λ_min|`` is constant. The dependence on ``d`` is then
that of ``E[−log c]``: for a uniform draw in the ball of ``R^{k+d}``, ``c ≈ r/√(k+d)``, so
``E[T](d) = C + E[−log c](d)/|λ_min| ≈ T₀ + log(k + d)/(2|λ_min|)`` — logarithmic, hence
polynomial, in ``d``. ``E[−log c](d)`` is computed by Monte Carlo (``2·10⁵`` draws, no flow)
up to ``d = 10⁴``; the measured mean escape times are compared with it, and polynomial
(``log T = a + p log d``) and exponential (``log T = a + c d``) laws are fitted to it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from landscape.dynamics.perturbation import isotropic_kick
from landscape.references import dense_spectrum

from .baseline import Tolerance
from .comparators import fit_power
from .parallel import TaskPool
from .profiles import Profile
from .records import ClaimResult, Metric, verdict_from_margin
from .scenarios import dead_neuron_saddle, landscape_of, mean_and_stderr, orthogonal_teacher_problem, run_training, write_evidence

CLAIM_ID = "escape-vs-dimension"
STATEMENT = (
    "The escape time from the dead-neuron saddle after one isotropic kick of fixed radius grows at most polynomially in "
    "the dimension d — by the linearisation, like log(k + d)/(2|λ_min|) (THEORY.md §9, §10 open questions)."
)
SCALE = 1.5
RADIUS = 1e-4
K0 = 2
#: T + log(c)/|λ_min| must vary (std over runs) by at most this fraction of the mean escape time.
CONSTANT_RTOL = 0.05
#: measured mean escape time per d vs the prediction: |diff| ≤ SIGMAS·stderr + SLACK·predicted, the stderr
#: from the Monte Carlo spread of −log c (two or four runs per d cannot estimate their own spread).
SIGMAS, SLACK = 3.0, 0.05
MC_DRAWS = 200_000
TOLERANCES = {
    "linearisation_spread": Tolerance(rtol=1.0, atol=0.01, bad="up"),
    "poly_exponent_wide": Tolerance(rtol=0.0, atol=0.02),
}
FLOW = {"integrator": "dopri5", "rtol": 1e-7, "atol": 1e-11, "step_size": 0.05}


def _problem(d: int) -> dict:
    return orthogonal_teacher_problem(k0=K0, d=d, scale=SCALE)


def unstable_direction(d: int = 3) -> tuple[float, np.ndarray, float]:
    """``(λ_min, v, L_saddle)`` at the saddle in ``d`` dimensions; ``v`` (flat, unit) with ``ψ0 = P^{-1/2} v``."""
    landscape = landscape_of(_problem(d))
    saddle = dead_neuron_saddle(K0, d, SCALE)
    eig, vec = dense_spectrum(landscape, saddle)
    return float(eig[0]), vec[:, 0], float(landscape.loss(*saddle.tensors()))


def _embed(v3: np.ndarray, d: int) -> np.ndarray:
    """The ``d = 3`` eigenvector padded with zeros in the coordinates ``e_4 … e_d`` of every ``w``."""
    parts = v3.reshape(K0, K0 + 3)
    return np.concatenate([parts, np.zeros((K0, d - 3))], axis=1).reshape(-1)


def _escape(directory: Path, d: int, seed: int, time: float) -> dict:
    lam, v3, saddle_loss = unstable_direction(3)
    lam_d, v_d, _ = unstable_direction(d)
    v = _embed(v3, d)
    saddle = dead_neuron_saddle(K0, d, SCALE)
    delta = isotropic_kick(K0, K0 + d, RADIUS, np.random.default_rng([seed, d]))
    c = abs(float(v @ (np.repeat(np.sqrt(saddle.p), K0 + d) * delta.reshape(-1))))
    directory.mkdir(parents=True, exist_ok=True)
    saddle.with_flat(saddle.flat() + delta.reshape(-1)).save(directory / "start.npz")
    start = {"kind": "file", "measure": str((directory / "start.npz").resolve())}
    run = run_training(directory, _problem(d), start, {**FLOW, "time": time})
    t, loss = run.trajectory["time"], run.trajectory["loss"]
    below = np.nonzero(loss < 0.5 * saddle_loss)[0]
    escape = math.nan
    if below.size and below[0] > 0:  # interpolate the crossing in log L
        i = below[0]
        l0, l1, target = math.log(loss[i - 1]), math.log(loss[i]), math.log(0.5 * saddle_loss)
        escape = float(t[i - 1] + (t[i] - t[i - 1]) * (l0 - target) / (l0 - l1))
    return {"d": d, "seed": seed, "escape_time": escape, "projection": c, "lambda_min_d": lam_d,
            "psi0_overlap": abs(float(v @ v_d)), "constant": escape + math.log(c) / abs(lam), "status": run.result.status}


def neg_log_projection(v3: np.ndarray, d: int, draws: int, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of ``−log c`` for independent uniform draws in the ball of radius ``r`` of ``R^{k+d}``."""
    rng = np.random.default_rng([seed, d])
    dim = K0 + d
    p = np.full(K0, 1.0 / K0)
    total = np.zeros(draws)
    for i, part in enumerate(v3.reshape(K0, K0 + 3)):
        # a uniform point in the ball: radius r U^{1/D}, direction g/|g|; only its projection on `part` matters
        g_par = rng.standard_normal(draws)
        g_rest = np.sqrt(rng.chisquare(dim - 1, draws))
        cos = g_par / np.sqrt(g_par**2 + g_rest**2)
        total += math.sqrt(p[i]) * np.linalg.norm(part) * RADIUS * rng.random(draws) ** (1.0 / dim) * cos
    values = -np.log(np.abs(total))
    return float(np.mean(values)), float(np.std(values))


def check(profile: Profile, out: Path, pool: TaskPool) -> ClaimResult:
    """Escape runs over d with known kick projections; the E[T](d) law by Monte Carlo; fits; judge."""
    dims = profile.pick([3, 8, 24], [3, 6, 12, 24, 48, 96])
    seeds = range(profile.pick(2, 4))
    time = 70.0
    runs = pool.run([(_escape, (out / f"d{d}_seed{s}", d, s, time)) for d in dims for s in seeds])
    lam, v3, _ = unstable_direction(3)
    rate = abs(lam)
    escaped = all(math.isfinite(r["escape_time"]) for r in runs)
    constants = np.array([r["constant"] for r in runs])
    c_mean, _ = mean_and_stderr(constants.tolist())
    mean_t = float(np.mean([r["escape_time"] for r in runs]))
    spread = float(np.std(constants, ddof=1) / mean_t) if escaped else math.nan
    wide = sorted({3, 4, 6, 10, 30, 100, 300, 1000, 3000, 10000, *dims})
    law = {d: neg_log_projection(v3, d, MC_DRAWS) for d in wide}
    predicted = {d: c_mean + law[d][0] / rate for d in wide}
    rows, agree = [], True
    for d in dims:
        times = [r["escape_time"] for r in runs if r["d"] == d]
        mean = float(np.mean(times))
        err = law[d][1] / rate / math.sqrt(len(times))  # the population spread of T, from the law of c
        ok = abs(mean - predicted[d]) <= SIGMAS * err + SLACK * predicted[d]
        agree &= bool(ok)
        rows.append({"d": d, "runs": len(times), "mean escape time": mean, "stderr": err, "predicted E[T]": predicted[d],
                     "agrees": ok, "λ_min(d)": float(np.mean([r["lambda_min_d"] for r in runs if r["d"] == d])),
                     "|⟨ψ0(3), ψ0(d)⟩|": float(np.min([r["psi0_overlap"] for r in runs if r["d"] == d]))})
    ws = np.array(wide, dtype=float)
    ts = np.array([predicted[d] for d in wide])
    p_wide, _, poly_rms = fit_power(ws, ts)
    coef, *_ = np.linalg.lstsq(np.stack([ws, np.ones_like(ws)], 1), np.log(ts), rcond=None)
    exp_rms = float(np.sqrt(np.mean((np.log(ts) - (coef[0] * ws + coef[1])) ** 2)))
    big = ws >= 30
    log_fit, *_ = np.linalg.lstsq(np.stack([np.log(K0 + ws[big]), np.ones(big.sum())], 1), ts[big], rcond=None)
    metrics = {
        "linearisation_spread": Metric(spread, 0.0, "std over runs of T + log(c)/|λ_min|, over the mean escape time"),
        "poly_exponent_wide": Metric(p_wide, 0.0, "p in log E[T] = a + p log d over d ∈ [3, 1e4]"),
        "poly_rms": Metric(poly_rms, 0.0, "rms residual (log E[T]) of the polynomial fit"),
        "exp_rms": Metric(exp_rms, 0.0, "rms residual (log E[T]) of the exponential fit"),
        "log_slope_ratio": Metric(float(log_fit[0]) * 2 * rate, 0.0, "dE[T]/dlog(k+d) for d ≥ 30, times 2|λ_min| (predicted 1)"),
        "lambda_min": Metric(lam, 0.0, "Wasserstein-Hessian λ_min at the saddle"),
        "escape_time_mean": Metric(mean_t, 0.0, f"mean measured escape time (r = {RADIUS:g})"),
    }
    overlap_ok = all(r["psi0_overlap"] > 1 - 1e-8 and abs(r["lambda_min_d"] - lam) < 1e-8 * rate for r in runs)
    passes = escaped and overlap_ok and spread <= CONSTANT_RTOL and agree and poly_rms < exp_rms
    fails = (not escaped) or spread > 4 * CONSTANT_RTOL or (exp_rms < 0.5 * poly_rms)
    table = rows + [{"d": d, "runs": 0, "mean escape time": None, "stderr": None, "predicted E[T]": predicted[d], "agrees": None,
                     "λ_min(d)": None, "|⟨ψ0(3), ψ0(d)⟩|": None} for d in wide if d not in dims]
    return ClaimResult(
        id=CLAIM_ID,
        statement=STATEMENT,
        verdict=verdict_from_margin(passes, fails),
        metrics=metrics,
        threshold=(
            f"pass: every run escapes within t = {time:g}; λ_min and ψ0 do not depend on d; T + log(c)/|λ_min| varies by ≤ "
            f"{CONSTANT_RTOL:g} of the mean T; each d's mean T is within {SIGMAS:g} stderr + {SLACK:g}·prediction of E[T](d); "
            "the polynomial law fits E[T](d) better than the exponential one. fail: a run does not escape, the spread exceeds "
            f"{4 * CONSTANT_RTOL:g}, or the exponential law fits twice as well"
        ),
        evidence=[write_evidence(out, "escape_vs_dimension.json", {"runs": runs, "predicted": {str(k): v for k, v in predicted.items()}})],
        table=sorted(table, key=lambda r: r["d"]),
    )

