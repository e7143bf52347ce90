# ruff: noqa: B023  (closures are timed at once, inside the loop iteration that defines them)
"""The performance suite (issue 7): one command, one table, every figure a ratio from this run.

Run from the repository root::

    python -m benchmarks table            # full sizes (about 15 CPU minutes)
    python -m benchmarks table --quick    # small sizes (a few CPU minutes)

Times are CPU seconds of this process (``time.process_time``) with one torch thread, so a
busy shared machine does not distort the ratios; every ratio compares two timings taken
in this same run. Rows:

1. HVP time / gradient time of the particle objective (goal ≤ 3): the reverse-mode HVP of
   :mod:`landscape.second_order.hessian` per product, and with its one-off setup amortised over 10 products;
2. λ_min to relative tolerance 1e-8: this toolkit (null directions deflated, Lanczos on the
   Wasserstein Hessian) against scipy ``eigsh`` on a plain ``torch.func`` HVP operator (no
   deflation, no structure) and against curvlinops' ``HessianLinearOperator`` + ``eigsh``
   (optional: ``pip install .[bench]``; skipped when missing); goal: the toolkit fastest.
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
import scipy.sparse.linalg as spla
import torch
from torch.func import grad, jvp

from landscape import AttentionLandscape, ExactGaussianExpectation, ParticleMeasure, SampledExpectation, Teacher, get_activation
from landscape.cases import dead_neuron_saddle, near_teacher_measure, orthogonal_teacher, orthogonal_teacher_landscape, teacher_measure
from landscape.dynamics.flow import Layout, ParticleFlow
from landscape.model.kernels import HermiteQuadrature
from landscape.second_order.eigensolvers import smallest_eigenpairs
from landscape.second_order.hessian import hessian_vector_product
from landscape.second_order.nullspace import null_space
from landscape.second_order.operators import WassersteinHessian

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
        g = grad(objective)
        t_grad = timed(lambda: g(theta))
        t_setup, hvp = once(lambda: hessian_vector_product(landscape, mu))
        v = torch.randn(theta.numel(), dtype=theta.dtype)
        t_hvp = timed(lambda: hvp(v))
        ratio = t_hvp / t_grad
        amortised = (t_hvp + t_setup / 10) / t_grad
        row(
            "HVP / gradient",
            f"{name}, M={mu.size}, n={theta.numel()}",
            f"{ratio:.2f} ({amortised:.2f} with setup/10)",
            "≤ 3",
            "yes" if ratio <= 3 else "no",
        )


# ----------------------------------------------------------------------------- 2
def split_saddle(copies: int) -> ParticleMeasure:
    """docs/theory.md §9 saddle (k = 5, d = 20) with every particle split into ``copies`` equal ones."""
    base = dead_neuron_saddle(K, D)
    return ParticleMeasure(np.repeat(base.a, copies, axis=0), np.repeat(base.w, copies, axis=0))


def curvlinops_operator(objective, theta):
    try:
        from curvlinops import HessianLinearOperator
    except ImportError:
        return None

    class Objective(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.theta = torch.nn.Parameter(theta.clone())

        def forward(self, x):
            return objective(self.theta).reshape(1, 1)

    class Total(torch.nn.Module):
        reduction = "sum"

        def forward(self, out, y):
            return out.sum()

    model = Objective()
    data = [(torch.zeros(1, 1, dtype=theta.dtype), torch.zeros(1, 1, dtype=theta.dtype))]
    return HessianLinearOperator(model, Total(), [model.theta], data, check_deterministic=False, num_data=1).to_scipy()


def part_eigen(quick: bool) -> None:
    print("\n== 2. λ_min to rtol 1e-8: toolkit vs plain torch.func + eigsh vs curvlinops + eigsh ==")
    landscape = orthogonal_teacher_landscape(K, D)
    cases = [("§9 teacher (global min)", teacher_measure(K, D)), ("§9 saddle split ×4", split_saddle(4))]
    if not quick:
        cases.append(("§9 saddle split ×16", split_saddle(16)))
    cases.append(("random near-teacher", near_teacher_measure(8 if quick else 40, K, D)))
    for warm in (cases[0][1], split_saddle(2)):  # first-call overheads stay out of the timings
        null_space(WassersteinHessian(landscape, warm), 1e-8)
    for name, mu in cases:
        m = mu.size

        start = clock()
        op = WassersteinHessian(landscape, mu)
        null = null_space(op, 1e-8)
        t_null = clock() - start
        res = smallest_eigenpairs(op, 1, "lanczos", tol=1e-8, maxiter=5000, deflate=null.basis if null.null_dim else None)
        t_tool, null_dim, hvps = clock() - start, null.null_dim, op.calls
        lam = float(res.eigenvalues[0])
        objective, theta = landscape.objective(mu)
        n = theta.numel()
        g = grad(objective)
        calls = [0]

        def plain_matvec(x):
            calls[0] += 1
            v = torch.as_tensor(np.ravel(x), dtype=theta.dtype)
            return jvp(g, (theta,), (v,))[1].numpy()

        plain = spla.LinearOperator((n, n), matvec=plain_matvec, dtype=np.float64)
        v0 = np.random.default_rng(0).standard_normal(n)
        t_plain, out = once(lambda: spla.eigsh(plain, k=1, which="SA", tol=1e-8, v0=v0, maxiter=20 * n))
        lam_plain = m * float(out[0][0])
        row(
            "λ_min: toolkit (deflated Lanczos)",
            f"{name}, n={n}, null_dim={null_dim}",
            f"{t_tool:.2f} s ({t_null:.2f} s null-space check), {hvps} HVPs, λ={lam:.6e}",
        )
        rel = abs(lam_plain - lam) / max(abs(lam), 1e-300)
        row(
            "λ_min: plain torch.func + eigsh",
            f"{name}, n={n}",
            f"{t_plain / t_tool:.1f}× toolkit time ({t_plain / (t_tool - t_null):.1f}× its Lanczos), {calls[0]} HVPs, rel Δλ {rel:.1e}"
            + (f" (it finds λ={lam_plain:.2e}: a null direction)" if rel > 1e-6 else ""),
            "> 1×",
            "yes" if t_plain > t_tool else "no",
        )
        cl = curvlinops_operator(objective, theta)
        if cl is None:
            row("λ_min: curvlinops + eigsh", name, "skipped: curvlinops not installed (pip install .[bench])")
            continue
        probe = np.random.default_rng(1).standard_normal(n)
        err = np.abs(cl @ probe - plain_matvec(probe)).max() / np.abs(plain_matvec(probe)).max()
        t_cl, out = once(lambda: spla.eigsh(cl, k=1, which="SA", tol=1e-8, v0=v0, maxiter=20 * n))
        lam_cl = m * float(out[0][0])
        note = f"; its HVP is WRONG here (rel err {err:.1e})" if err > 1e-8 else ""
        row(
            "λ_min: curvlinops + eigsh",
            f"{name}, n={n}",
            f"{t_cl / t_tool:.1f}× toolkit time, rel Δλ {abs(lam_cl - lam) / max(abs(lam), 1e-300):.1e}{note}",
            "> 1×",
            "yes" if t_cl > t_tool else "no",
        )


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
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    start = clock()
    cuda = torch.cuda.is_available()
    where = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {where}, threads {torch.get_num_threads()}, float64, CUDA {'yes' if cuda else 'no'}")
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
