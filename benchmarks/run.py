# ruff: noqa: B023  (closures are timed at once, inside the loop iteration that defines them)
"""The performance suite (issue 7): one command, one table, every figure a ratio from this run.

Run from the repository root::

    python -m benchmarks table            # full sizes (about 15 CPU minutes)
    python -m benchmarks table --quick    # small sizes (a few CPU minutes)

Times are CPU seconds of this process (``time.process_time``) with every thread pool pinned
to one thread (``torch.set_num_threads`` and ``threadpoolctl`` for BLAS/OpenMP), so a
busy shared machine does not distort the ratios; every ratio compares two timings taken
in this same run. Rows:

1. HVP time / gradient time of the particle objective (goal ≤ 3): the reverse-mode HVP of
   :mod:`landscape.second_order.hessian` per product, and with its one-off setup amortised over
   10 products, against a plain autograd gradient (``torch.autograd.grad`` of the loss) and
   against ``torch.func.grad`` (which costs more than a plain backward, flattering the ratio);
2. λ_min to relative tolerance 1e-8 on four cases (:func:`benchmarks.second_order.part_eigen`):
   this toolkit (null directions checked in closed form and deflated, Lanczos on the
   Wasserstein Hessian) against scipy ``eigsh`` on a plain ``torch.func`` HVP operator (no
   deflation, no structure) and on curvlinops' ``HessianLinearOperator`` with its product
   corrected (optional: ``pip install .[bench]``; skipped with the reason when missing), its
   error against the dense Hessian printed; goal: the toolkit fastest, same certificates.
   The plain operators see ``∇²F``; uniform ``p = 1/M`` makes ``λ(P^{-1/2}∇²F P^{-1/2}) = M λ(∇²F)``;
3. one flow-field evaluation (loss, gradient, first variation: one RK stage) against the
   matrix products it needs, ``4 n M d`` flops sampled (``X Wᵀ`` and its transpose product
   in the backward pass) and ``4 M² d`` exact (the Gram ``W Wᵀ`` and ``(G + Gᵀ) W``), as a
   fraction of this machine's float64 dense matmul rate measured in this run (goal ≥ 50%);
4. growth of time (one loss + gradient) and autograd memory (bytes of tensors saved for
   the backward pass) with M, n, d, k: fitted log-log exponents (sampled: goal 1 in M and n);
5. exact against sampled expectations: the sample size ``n(ε)`` that gives a relative loss
   error ε, and the M above which the exact backend (``O(M²d)``) costs more than the sampled
   one at that n (``O(n M d)``): the crossover at equal accuracy.
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch.func import grad

from benchmarks import second_order
from landscape import AttentionLandscape, ExactGaussianExpectation, ParticleMeasure, SampledExpectation, Teacher, get_activation
from landscape.cases import near_teacher_measure, orthogonal_teacher, orthogonal_teacher_landscape
from landscape.dynamics.flow import Layout, ParticleFlow
from landscape.model.kernels import HermiteQuadrature
from landscape.second_order.hessian import hessian_vector_product

K, D = 5, 20
clock = time.process_time
ROWS: list[tuple[str, str, str, str, str]] = []


def row(part: str, setting: str, value: str, goal: str = "", met: str = "") -> None:
    ROWS.append((part, setting, value, goal, met))
    print(f"  {part:<34} {setting:<44} {value:<34} {goal:<8} {met}", flush=True)


def timed(fn, repeat: int = 3) -> float:
    """Best of ``repeat`` CPU times after one warm-up call."""
    fn()
    best = math.inf
    for _ in range(repeat):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def once(fn) -> tuple[float, object]:
    start = clock()
    out = fn()
    return clock() - start, out


def matmul_rate(dtype=torch.float64, size: int = 1024) -> float:
    """Dense float64 matmul rate of this process, flop/s (best of 3, ``size³`` products)."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    return 2.0 * size**3 / timed(lambda: a @ b, 3)


def erf_teacher(d: int = D, k: int = K) -> Teacher:
    """The §9 orthogonal erf teacher, ``s = 1.5`` (:func:`landscape.cases.orthogonal_teacher`)."""
    return orthogonal_teacher(k, d, 1.5, "erf")


def random_measure(m: int, k: int, d: int, seed: int = 0) -> ParticleMeasure:
    rng = np.random.default_rng(seed)
    return ParticleMeasure(rng.standard_normal((m, k)), rng.standard_normal((m, d)) / math.sqrt(d))


def loss_and_grad(landscape: AttentionLandscape, a, w, p):
    a = a.detach().requires_grad_(True)
    w = w.detach().requires_grad_(True)
    loss = landscape.loss(a, w, p)
    return torch.autograd.grad(loss, (a, w))


def saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves for the backward pass while ``fn`` runs."""
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def slope(xs, ys) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


# ----------------------------------------------------------------------------- 1
def part_hvp(quick: bool) -> None:
    print("\n== 1. HVP time / gradient time (goal ≤ 3) ==")
    cases = [("erf exact", orthogonal_teacher_landscape(K, D), near_teacher_measure(m, K, D)) for m in ([40] if quick else [40, 160])]
    teacher = Teacher(np.diag([1.0, 0.8, 0.6, 0.4, 0.2]), 3.0 * np.eye(D)[:K], "sigmoid")
    sig = AttentionLandscape(teacher, ExactGaussianExpectation(teacher, get_activation("sigmoid"), quadrature=HermiteQuadrature(64)))
    m_paper = 100 if quick else 500
    cases.append(("paper sigmoid exact (Mehler 64)", sig, random_measure(m_paper, K, D)))
    for name, landscape, mu in cases:
        objective, theta = landscape.objective(mu)
        t_grad = timed(second_order.autograd_gradient(objective, theta))
        g = grad(objective)
        t_func = timed(lambda: g(theta))
        t_setup, hvp = once(lambda: hessian_vector_product(landscape, mu))
        v = torch.randn(theta.numel(), dtype=theta.dtype)
        t_hvp = timed(lambda: hvp(v))
        ratio = t_hvp / t_grad
        amortised = (t_hvp + t_setup / 10) / t_grad
        row(
            "HVP / autograd gradient",
            f"{name}, M={mu.size}, n={theta.numel()}",
            f"{ratio:.2f} ({amortised:.2f} with setup/10; {t_hvp / t_func:.2f} / torch.func.grad)",
            "≤ 3",
            "yes" if ratio <= 3 else "no",
        )


# ----------------------------------------------------------------------------- 2
def part_eigen(quick: bool) -> None:
    """λ_min rows: :func:`benchmarks.second_order.part_eigen` (one implementation), collected in the table."""
    second_order.part_eigen(quick, row)


# ----------------------------------------------------------------------------- 3
def part_flow(quick: bool, rate: float) -> None:
    print(f"\n== 3. one flow-field evaluation vs dense matmul rate ({rate / 1e9:.2f} Gflop/s float64, this run; goal ≥ 50%) ==")
    teacher = erf_teacher()
    act = get_activation("erf")
    m, n = (500, 10_000) if quick else (1000, 40_000)
    x = np.random.default_rng(1).standard_normal((n, D))
    setups = [
        ("sampled erf", AttentionLandscape(teacher, SampledExpectation(teacher, act, x)), m, 4.0 * n * m * D, f"n={n}"),
        ("exact erf", AttentionLandscape(teacher, ExactGaussianExpectation(teacher, act)), 4 * m, 4.0 * (4 * m) ** 2 * D, ""),
    ]
    for name, landscape, mm, flops, extra in setups:
        mu = random_measure(mm, K, D)
        a, w, p = mu.tensors()
        layout = Layout(mm, K, D, False)
        flow = ParticleFlow(landscape, layout)
        y = layout.pack(a, w, p, None, 0.0)
        t = timed(lambda: flow(y))
        frac = flops / t / rate
        row(
            "flow step / matmul peak",
            f"{name}, M={mm}, d={D}, {extra}".rstrip(", "),
            f"{100 * frac:.0f}% ({t * 1e3:.0f} ms per field)",
            "≥ 50%",
            "yes" if frac >= 0.5 else "no",
        )
    # the bare products alone (same shapes), to separate the product rate from the rest
    xt = torch.as_tensor(x)
    w = torch.as_tensor(random_measure(m, K, D).w)
    g = torch.randn(n, m)
    t = timed(lambda: (xt @ w.T, g.T @ xt))
    row("bare X Wᵀ and Gᵀ X / matmul peak", f"n={n}, M={m}, d={D} (no activation, no loss)", f"{100 * 4.0 * n * m * D / t / rate:.0f}%")
    w4 = torch.as_tensor(random_measure(4 * m, K, D).w)
    g4 = torch.randn(4 * m, 4 * m)
    t = timed(lambda: (w4 @ w4.T, g4 @ w4))
    row("bare W Wᵀ and G W / matmul peak", f"M={4 * m}, d={D} (no kernel, no loss)", f"{100 * 4.0 * (4 * m) ** 2 * D / t / rate:.0f}%")


# ----------------------------------------------------------------------------- 4
def part_scaling(quick: bool) -> None:
    print("\n== 4. growth exponents of one loss + gradient (time: CPU s; memory: autograd saved bytes) ==")
    base = dict(m=400, n=8000, d=D, k=K) if quick else dict(m=800, n=16_000, d=D, k=K)
    grids = {
        "M": [base["m"] // 4, base["m"] // 2, base["m"], 2 * base["m"]],
        "n": [base["n"] // 4, base["n"] // 2, base["n"], 2 * base["n"]],
        "d": [10, 20, 40, 80],
        "k": [2, 5, 10, 20],
    }
    if quick:
        grids = {key: values[:3] for key, values in grids.items()}
    act = get_activation("erf")
    for mode in ("sampled", "exact"):
        for var, values in grids.items():
            if mode == "exact" and var == "n":
                continue
            times, mems = [], []
            for value in values:
                cfg = dict(base, **{var.lower(): value})
                m, n, d, k = cfg["m"], cfg["n"], cfg["d"], cfg["k"]
                teacher = erf_teacher(max(d, k + 1), k)
                if mode == "sampled":
                    x = np.random.default_rng(2).standard_normal((n, teacher.dim))
                    landscape = AttentionLandscape(teacher, SampledExpectation(teacher, act, x))
                else:
                    landscape = AttentionLandscape(teacher, ExactGaussianExpectation(teacher, act))
                a, w, p = random_measure(m, k, teacher.dim).tensors()
                times.append(timed(lambda: loss_and_grad(landscape, a, w, p), 2))
                mems.append(saved_bytes(lambda: landscape.loss(a.requires_grad_(True), w.requires_grad_(True), p)))
                a.requires_grad_(False)
                w.requires_grad_(False)
            goal = "1" if (mode == "sampled" and var in ("M", "n")) else ""
            st, sm = slope(values, times), slope(values, mems)
            met = ("yes" if abs(st - 1) < 0.25 and abs(sm - 1) < 0.25 else "no") if goal else ""
            row(f"growth exponent, {mode}", f"{var} ∈ {values}", f"time {st:.2f}, memory {sm:.2f}", goal, met)


# ----------------------------------------------------------------------------- 5
def part_crossover(quick: bool) -> None:
    print("\n== 5. exact vs sampled expectations: crossover in M at equal accuracy (erf, d = 20, k = 5) ==")
    teacher = erf_teacher()
    act = get_activation("erf")
    exact = AttentionLandscape(teacher, ExactGaussianExpectation(teacher, act))
    mu = random_measure(50, K, D, seed=3)
    a, w, p = mu.tensors()
    truth = float(exact.loss(a, w, p))
    n0 = 4000
    errors = []
    for seed in range(4 if quick else 8):
        x = np.random.default_rng(100 + seed).standard_normal((n0, D))
        errors.append((float(AttentionLandscape(teacher, SampledExpectation(teacher, act, x)).loss(a, w, p)) - truth) / truth)
    c = math.sqrt(np.mean(np.square(errors))) * math.sqrt(n0)  # relative error ≈ c / √n
    ms = [250, 500, 1000] if quick else [250, 500, 1000, 2000, 4000]
    t_exact = []
    for m in ms:
        a, w, p = random_measure(m, K, D).tensors()
        t_exact.append(timed(lambda: loss_and_grad(exact, a, w, p), 1))
    row("sampled loss error", f"relative, n = {n0}, {len(errors)} seeds", f"{c / math.sqrt(n0):.1e} (≈ {c:.2f}/√n)")
    row("exact cost exponent in M", f"M ∈ {ms}", f"{slope(ms, t_exact):.2f} (loss + gradient)")
    for eps in (1e-2, 3e-3) if quick else (1e-2, 3e-3, 1e-3):
        n_eps = int(math.ceil((c / eps) ** 2))
        x = np.random.default_rng(5).standard_normal((n_eps, D))
        sampled = AttentionLandscape(teacher, SampledExpectation(teacher, act, x))
        ratios = []
        for m, t_e in zip(ms, t_exact, strict=True):
            a, w, p = random_measure(m, K, D).tensors()
            ratios.append(t_e / timed(lambda: loss_and_grad(sampled, a, w, p), 1))
        logs = np.log(ratios)
        cross = [i for i in range(len(ms) - 1) if (logs[i] <= 0) != (logs[i + 1] <= 0)]
        if cross:
            i = cross[0]
            t = logs[i] / (logs[i] - logs[i + 1])
            value = f"M* ≈ {math.exp(math.log(ms[i]) + t * math.log(ms[i + 1] / ms[i])):.0f}: exact cheaper below"
        elif logs[-1] < 0:
            value = f"exact cheaper for every M ≤ {ms[-1]}"
        else:
            value = f"sampled cheaper for every M ≥ {ms[0]}"
        spread = ", ".join(f"{r:.2g}" for r in ratios)
        row("exact/sampled crossover", f"rel. loss error ε = {eps:g} (n(ε) = {n_eps})", f"{value} (exact/sampled time: {spread})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks table", description="Performance table of issue 7 (ratios measured in one run).")
    parser.add_argument("--quick", action="store_true", help="small sizes (a few CPU minutes)")
    parser.add_argument("--threads", type=int, default=1, help="threads of every pool: torch and BLAS/OpenMP (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        table(args)


def table(args: argparse.Namespace) -> None:
    """Every part, then the markdown table."""
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    start = clock()
    cuda = torch.cuda.is_available()
    where = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {where}, threads {torch.get_num_threads()} (all pools pinned), float64, CUDA {'yes' if cuda else 'no'}")
    rate = matmul_rate()
    part_hvp(args.quick)
    part_eigen(args.quick)
    part_flow(args.quick, rate)
    part_scaling(args.quick)
    part_crossover(args.quick)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n== table (markdown; {clock() - start:.0f} CPU s, peak RSS {peak:.0f} MiB) ==")
    print("| part | setting | measured (ratios from this run) | goal | met |")
    print("| --- | --- | --- | --- | --- |")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
