"""Benchmark of the second-order toolkit (not a test). Run from the repository root:

    python -m benchmarks second-order            # full: parameter counts up to 10 000
    python -m benchmarks second-order --quick    # a one-minute smoke run

Prints, in one run:
1. HVP time / gradient time, both HVP modes (goal ≤ 3), over parameter counts;
2. λ_min by Lanczos (matrix-free) against dense ``eigh`` (Hessian materialised by batched
   HVPs), over parameter counts up to at least 10⁴;
3. Lanczos HVP counts to tolerance 1e-8 with and without deflating the null directions,
   at the docs/theory.md §9 teacher and saddle;
4. peak resident memory (``ru_maxrss``) after each part.

Times are CPU seconds of this process (``time.process_time``) with one torch thread by
default (``--threads``), so that a busy shared machine does not distort the ratios; on
an idle machine they equal wall-clock seconds.

Problem: erf teacher with k° = k = 5 orthogonal neurons in d = 20 (docs/theory.md §9), exact
Gaussian expectations, N = ∞; measures of M particles near the teacher, n = 25·M.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch
from torch.func import grad

from landscape.cases import dead_neuron_saddle, near_teacher_measure, orthogonal_teacher_landscape, teacher_measure
from landscape.second_order.eigensolvers import smallest_eigenpairs
from landscape.second_order.hessian import hessian_vector_product
from landscape.second_order.nullspace import null_space
from landscape.second_order.operators import WassersteinHessian

K, D = 5, 20


def peak_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


clock = time.process_time


def timed(fn, repeat: int) -> float:
    """Best of ``repeat`` CPU times after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def part_ratio(landscape, sizes, device):
    print("\n== 1. HVP time / gradient time (goal ≤ 3) ==")
    print(f"{'n':>7} {'grad s':>9} {'reverse s':>10} {'ratio':>6} {'forward s':>10} {'ratio':>6} {'setup s':>8}")
    for m in sizes:
        mu = near_teacher_measure(m, K, D)
        objective, theta = landscape.objective(mu)
        g = grad(objective)
        t_grad = timed(lambda: g(theta), 5)
        v = torch.randn(theta.numel(), dtype=theta.dtype, device=device)
        start = clock()
        rev = hessian_vector_product(landscape, mu, "reverse")
        setup = clock() - start
        t_rev = timed(lambda: rev(v), 5)
        fwd = hessian_vector_product(landscape, mu, "forward")
        t_fwd = timed(lambda: fwd(v), 3)
        print(f"{theta.numel():>7} {t_grad:>9.4f} {t_rev:>10.4f} {t_rev / t_grad:>6.2f} {t_fwd:>10.4f} {t_fwd / t_grad:>6.2f} {setup:>8.3f}")
    print(f"peak memory {peak_mib():.0f} MiB")


def part_lanczos_vs_dense(landscape, sizes, batch):
    print("\n== 2. λ_min: Lanczos (matrix-free) vs dense eigh ==")
    print(f"{'n':>7} {'lanczos s':>10} {'HVPs':>6} {'λ_min (Lanczos)':>18} {'residual':>9} {'dense s':>9} {'λ_min (eigh)':>16} {'|Δλ|':>9}")
    for m in sizes:
        mu = near_teacher_measure(m, K, D)
        op = WassersteinHessian(landscape, mu)
        start = clock()
        res = smallest_eigenpairs(op, 1, "lanczos", tol=1e-8, maxiter=5000)
        t_lan = clock() - start
        start = clock()
        eye = torch.eye(op.size, dtype=op.dtype, device=op.device)
        dense = torch.cat([op.matmat(eye[:, i : i + batch]) for i in range(0, op.size, batch)], dim=1)
        lam = torch.linalg.eigvalsh(0.5 * (dense + dense.T))[0].item()
        t_dense = clock() - start
        del dense, eye
        print(
            f"{op.size:>7} {t_lan:>10.2f} {res.hvp_count:>6} {res.eigenvalues[0]:>18.10e} {res.residuals[0]:>9.1e}"
            f" {t_dense:>9.2f} {lam:>16.10e} {abs(lam - res.eigenvalues[0]):>9.1e}"
        )
        sys.stdout.flush()
    print(f"peak memory {peak_mib():.0f} MiB")


def part_deflation(landscape_small):
    print("\n== 3. Lanczos HVP counts to tol 1e-8, with and without deflation (docs/theory.md §9, k = 5, d = 20) ==")
    print(f"{'case':>8} {'n':>5} {'null_dim':>8} {'deflated':>8} {'HVPs':>6} {'λ_min':>14} {'residual':>9} {'converged':>9}")
    for name, mu in (("teacher", teacher_measure(K, D)), ("saddle", dead_neuron_saddle(K, D))):
        op = WassersteinHessian(landscape_small, mu)
        null = null_space(op, 1e-8)
        for deflate in (False, True):
            res = smallest_eigenpairs(op, 1, "lanczos", tol=1e-8, maxiter=5000, deflate=null.basis if deflate else None)
            hvps = res.hvp_count + (null.symmetry_dim if deflate else 0)
            print(
                f"{name:>8} {op.size:>5} {null.null_dim:>8} {str(deflate):>8} {hvps:>6} {res.eigenvalues[0]:>14.6e}"
                f" {res.residuals[0]:>9.1e} {str(res.converged):>9}"
            )
    print("(with deflation the count includes the null-space check, one HVP per symmetry direction)")
    print(f"peak memory {peak_mib():.0f} MiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks second-order", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--batch", type=int, default=200, help="HVP columns per batch when materialising")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    sizes_ratio = [8, 40, 160] if args.quick else [8, 40, 160, 400]
    sizes_dense = [8, 40] if args.quick else [40, 160, 400]
    landscape = orthogonal_teacher_landscape(K, D)
    if args.device != "cpu":
        from landscape.landscape import AttentionLandscape
        from landscape.model.expectations import ExactGaussianExpectation

        exp = ExactGaussianExpectation(landscape.teacher, landscape.expectation.activation, device=args.device)
        landscape = AttentionLandscape(landscape.teacher, exp)
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, float64")
    part_ratio(landscape, sizes_ratio, args.device)
    part_lanczos_vs_dense(landscape, sizes_dense, args.batch)
    part_deflation(landscape)


if __name__ == "__main__":
    main()
