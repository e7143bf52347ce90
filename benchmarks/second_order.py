# ruff: noqa: B023  (closures are timed at once, inside the loop iteration that defines them)
"""Benchmark of the second-order toolkit (not a test). Run from the repository root:

    python -m benchmarks second-order            # full: parameter counts up to 10 000
    python -m benchmarks second-order --quick    # a one-minute smoke run

Prints, in one run:
1. HVP time / gradient time, both HVP modes (goal ≤ 3), over parameter counts, against a
   plain autograd gradient (``torch.autograd.grad`` of the loss) and ``torch.func.grad``;
2. λ_min to relative tolerance 1e-8 on four cases (docs/theory.md §9 teacher, the saddle
   split ×4 and ×16, a random near-teacher measure): this toolkit (null directions checked
   in closed form and deflated, Lanczos on the Wasserstein Hessian) against scipy ``eigsh``
   on a plain ``torch.func`` HVP operator (no deflation, no structure) and on a corrected
   curvlinops ``HessianLinearOperator`` (optional: ``pip install .[bench]``; skipped with the
   reason when missing), with HVP counts, and whether the certificates (deflated subspace,
   λ_min, residual) equal those of the reference null-space check (one HVP per direction);
3. λ_min by Lanczos (matrix-free) against dense ``eigh`` (Hessian materialised by batched
   HVPs), over parameter counts up to at least 10⁴;
4. Lanczos HVP counts to tolerance 1e-8 with and without deflating the null directions,
   at the docs/theory.md §9 teacher and saddle;
5. peak resident memory (``ru_maxrss``) after each part.

Times are CPU seconds of this process (``time.process_time``) with every thread pool
pinned to ``--threads`` (default 1: ``torch.set_num_threads`` and ``threadpoolctl`` for
the BLAS/OpenMP pools, which ``set_num_threads`` does not limit), so that a busy shared
machine does not distort the ratios; on an idle machine they equal wall-clock seconds.
Each λ_min time is the best of three alternating runs.

Problem: erf teacher with k° = k = 5 orthogonal neurons in d = 20 (docs/theory.md §9), exact
Gaussian expectations, N = ∞; measures of M particles near the teacher, n = 25·M.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from typing import Callable

import numpy as np
import scipy.sparse.linalg as spla
import torch
from threadpoolctl import threadpool_limits
from torch.func import grad, jvp, vmap

from landscape.cases import dead_neuron_saddle, near_teacher_measure, orthogonal_teacher_landscape, teacher_measure
from landscape.model.measure import ParticleMeasure
from landscape.second_order.eigensolvers import smallest_eigenpairs
from landscape.second_order.hessian import hessian_vector_product
from landscape.second_order.nullspace import null_space
from landscape.second_order.operators import WassersteinHessian
from landscape.second_order.references import dense_hessian

K, D = 5, 20
#: the curvlinops operator is checked against the dense Hessian up to this many parameters
#: (``torch.func.hessian`` of n = 2000 takes 2.5 GiB); above, against this toolkit's HVP.
DENSE_CHECK_MAX = 1000


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


def print_row(part: str, setting: str, value: str, goal: str = "", met: str = "") -> None:
    """The default row printer (``benchmarks.run`` passes its own, which also collects the table)."""
    print(f"  {part:<34} {setting:<44} {value:<34} {goal:<8} {met}", flush=True)


def autograd_gradient(objective: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The plain reverse-mode gradient of ``objective`` at ``theta`` (one forward, one ``torch.autograd.grad``)."""

    def run() -> torch.Tensor:
        point = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            return torch.autograd.grad(objective(point), point)[0]

    return run


def part_ratio(landscape, sizes, device):
    print("\n== 1. HVP time / gradient time (goal ≤ 3): against a plain autograd gradient and torch.func.grad ==")
    print(
        f"{'n':>7} {'autograd s':>10} {'func.grad s':>11} {'reverse s':>10} {'/autograd':>9} {'/func':>6}"
        f" {'forward s':>10} {'/autograd':>9} {'setup s':>8}"
    )
    for m in sizes:
        mu = near_teacher_measure(m, K, D)
        objective, theta = landscape.objective(mu)
        t_auto = timed(autograd_gradient(objective, theta), 5)
        g = grad(objective)
        t_func = timed(lambda: g(theta), 5)
        v = torch.randn(theta.numel(), dtype=theta.dtype, device=device)
        start = clock()
        rev = hessian_vector_product(landscape, mu, "reverse")
        setup = clock() - start
        t_rev = timed(lambda: rev(v), 5)
        fwd = hessian_vector_product(landscape, mu, "forward")
        t_fwd = timed(lambda: fwd(v), 3)
        print(
            f"{theta.numel():>7} {t_auto:>10.4f} {t_func:>11.4f} {t_rev:>10.4f} {t_rev / t_auto:>9.2f} {t_rev / t_func:>6.2f}"
            f" {t_fwd:>10.4f} {t_fwd / t_auto:>9.2f} {setup:>8.3f}"
        )
    print(f"peak memory {peak_mib():.0f} MiB")


# ----------------------------------------------------------------------------- λ_min
def split_saddle(copies: int) -> ParticleMeasure:
    """docs/theory.md §9 saddle (k = 5, d = 20) with every particle split into ``copies`` equal ones."""
    base = dead_neuron_saddle(K, D)
    return ParticleMeasure(np.repeat(base.a, copies, axis=0), np.repeat(base.w, copies, axis=0))


def eigen_cases(quick: bool) -> list[tuple[str, ParticleMeasure]]:
    """The four λ_min benchmark cases (the near-teacher measure has M = 8 with ``quick``, else 40)."""
    return [
        ("§9 teacher (global min)", teacher_measure(K, D)),
        ("§9 saddle split ×4", split_saddle(4)),
        ("§9 saddle split ×16", split_saddle(16)),
        ("random near-teacher", near_teacher_measure(8 if quick else 40, K, D)),
    ]


class CountingOperator(spla.LinearOperator):
    """A symmetric scipy operator from a torch product ``V (n, b) ↦ H V``, counting columns in ``calls``."""

    def __init__(self, product: Callable[[torch.Tensor], torch.Tensor], n: int) -> None:
        super().__init__(np.float64, (n, n))
        self.product = product
        self.calls = 0

    def _matmat(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(self.shape[0], -1)
        self.calls += x.shape[1]
        return self.product(torch.as_tensor(x)).detach().numpy()

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._matmat(x).reshape(-1)

    _rmatvec = _matvec


def plain_operator(objective, theta) -> CountingOperator:
    """``∇²F`` as ``jvp(torch.func.grad(F))``, vmap-batched: what a user writes without this toolkit."""
    g = grad(objective)
    batched = vmap(lambda v: jvp(g, (theta,), (v,))[1], in_dims=1, out_dims=1)
    return CountingOperator(batched, theta.numel())


def curvlinops_operator(objective, theta, corrected: bool = True) -> tuple[CountingOperator | None, str]:
    """curvlinops' ``HessianLinearOperator`` of ``F`` as a counting scipy operator, or ``(None, reason)``.

    Why the stock operator is wrong here (``corrected=False``), and the correction: curvlinops
    3 multiplies by the Hessian as ``jvp(jacrev(loss))`` inside ``@torch.no_grad()``. Under
    torch 2.13, with grad mode off, the backward of ``torch.linalg.solve`` (which ``F`` calls
    on ``Σ_µµ``) reuses its saved LU factor without that factor's forward-mode tangent, so
    the product misses the derivative of the factorisation. A pure-torch repro:
    ``f(x) = tr(Cᵀ solve(A(x), C))`` with ``A`` affine in ``x``; ``jvp(jacrev(f), (x,), (v,))``
    equals ``∇²f·v`` with grad enabled and is wrong by about 60% relative under ``no_grad``,
    while ``jvp(grad(f))`` is right in both modes (``inv``, ``lu_solve``, ``cholesky_solve``
    are unaffected). This wrapping of ``F`` is not the cause: the same operator is right once
    grad mode is on. The corrected operator (default) keeps curvlinops' model, loss, data
    loop and scipy interface and replaces only its batch product by a vmapped
    ``jvp(grad(loss))`` under ``torch.enable_grad()``.
    """
    try:
        from curvlinops import HessianLinearOperator
        from curvlinops.utils import make_functional_model_and_loss
    except ImportError as err:
        return None, f"curvlinops not importable ({err}); pip install .[bench]"

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

    class GradEnabledHessian(HessianLinearOperator):
        """curvlinops' Hessian with the batch product ``jvp(grad(loss))`` under grad mode."""

        def _matmat_batch(self, X, y, M):
            f, c = make_functional_model_and_loss(self._model_func, self._loss_func, tuple(self._params))
            params = tuple(self._params)

            def product(*v):
                return jvp(grad(lambda *ps: c(f(*ps, X), y), argnums=tuple(range(len(params)))), params, v)[1]

            dims = tuple(p.ndim for p in params)
            with torch.enable_grad():
                return list(vmap(product, in_dims=dims, out_dims=dims)(*M))

    model = Objective()
    data = [(torch.zeros(1, 1, dtype=theta.dtype), torch.zeros(1, 1, dtype=theta.dtype))]
    cls = GradEnabledHessian if corrected else HessianLinearOperator
    op = cls(model, Total(), [model.theta], data, check_deterministic=False, num_data=1)
    return CountingOperator(lambda v: op @ v, theta.numel()), ""


def relative_error(product: CountingOperator, reference: torch.Tensor, probes: np.ndarray) -> float:
    """``max |A P − R P| / max |R P|`` for a reference matrix or product ``R`` and probes ``P`` (n, b)."""
    exact = (reference @ torch.as_tensor(probes)).numpy() if isinstance(reference, torch.Tensor) else reference(probes)
    return float(np.abs(product @ probes - exact).max() / np.abs(exact).max())


def lambda_toolkit(landscape, mu, closed_form: bool = True):
    """The toolkit's λ_min to rtol 1e-8: null-space check, deflated Lanczos; ``(λ, op, null, eigen)``."""
    op = WassersteinHessian(landscape, mu)
    null = null_space(op, 1e-8, closed_form=closed_form)
    eigen = smallest_eigenpairs(op, 1, "lanczos", tol=1e-8, maxiter=5000, deflate=null.basis if null.null_dim else None)
    return float(eigen.eigenvalues[0]), op, null, eigen


def lambda_eigsh(operator: CountingOperator, m: int, v0: np.ndarray) -> float:
    """``M·λ_min(∇²F)`` by ``eigsh`` to rtol 1e-8 (uniform ``p = 1/M``: ``λ(Ĥ) = M λ(∇²F)``)."""
    return m * float(spla.eigsh(operator, k=1, which="SA", tol=1e-8, v0=v0, maxiter=20 * operator.shape[0])[0][0])


def same_certificates(fast, slow) -> bool:
    """The closed-form null-space check and the column-by-column one give the same certificates.

    Same deflated dimension and subspace (projectors to 1e-10), λ_min to the eigensolver's
    rtol 1e-8, both eigenpairs converged, and null residuals below the 1e-8 threshold.
    """
    (lam_f, _, null_f, eig_f), (lam_s, _, null_s, eig_s) = fast, slow
    projector = null_f.basis @ null_f.basis.T - null_s.basis @ null_s.basis.T
    return (
        null_f.null_dim == null_s.null_dim
        and (projector.numel() == 0 or float(projector.abs().max()) < 1e-10)
        and abs(lam_f - lam_s) <= 1e-8 * max(abs(lam_s), 1e-300)
        and eig_f.converged
        and eig_s.converged
        and max(null_f.residual, null_s.residual) <= 1e-8
    )


def part_eigen(quick: bool, row: Callable[..., None] = print_row, repeat: int = 3) -> None:
    """λ_min to rtol 1e-8 on the four cases: toolkit vs plain torch.func + eigsh vs corrected curvlinops + eigsh."""
    print("\n== 2. λ_min to rtol 1e-8: toolkit vs plain torch.func + eigsh vs corrected curvlinops + eigsh ==")
    landscape = orthogonal_teacher_landscape(K, D)
    for warm in (teacher_measure(K, D), split_saddle(2)):  # first-call overheads stay out of the timings
        lambda_toolkit(landscape, warm)
    for name, mu in eigen_cases(quick):
        m = mu.size
        objective, theta = landscape.objective(mu)
        n = theta.numel()
        v0 = np.random.default_rng(0).standard_normal(n)
        plain = plain_operator(objective, theta)
        curv, reason = curvlinops_operator(objective, theta)
        times = {"toolkit": math.inf, "plain": math.inf, "curvlinops": math.inf}
        for _ in range(repeat):  # alternating, best of each
            start = clock()
            fast = lambda_toolkit(landscape, mu)
            times["toolkit"] = min(times["toolkit"], clock() - start)
            plain.calls = 0
            start = clock()
            lam_plain = lambda_eigsh(plain, m, v0)
            times["plain"] = min(times["plain"], clock() - start)
            if curv is not None:
                curv.calls = 0
                start = clock()
                lam_curv = lambda_eigsh(curv, m, v0)
                times["curvlinops"] = min(times["curvlinops"], clock() - start)
        start = clock()
        slow = lambda_toolkit(landscape, mu, closed_form=False)
        t_slow = clock() - start
        lam, op, null, eigen = fast
        same = same_certificates(fast, slow)
        t_tool = times["toolkit"]
        row(
            "λ_min: toolkit (closed-form check)",
            f"{name}, n={n}, null_dim={null.null_dim}/{null.symmetry_dim}",
            f"{t_tool:.3f} s, {op.calls} HVPs ({null.hvp_count} in the check), λ={lam:.6e} ± {eigen.residuals[0]:.1e}, "
            f"same certificates as one HVP per direction ({t_slow:.3f} s, {slow[1].calls} HVPs): {'yes' if same else 'NO'}",
        )
        rel = abs(lam_plain - lam) / max(abs(lam), 1e-300)
        row(
            "λ_min: plain torch.func + eigsh",
            f"{name}, n={n}",
            f"{times['plain']:.3f} s = {times['plain'] / t_tool:.1f}× toolkit, {plain.calls} HVPs, rel Δλ {rel:.1e}"
            + (f" (it finds λ={lam_plain:.2e}: a null direction)" if rel > 1e-6 else ""),
            "> 1×",
            "yes" if times["plain"] > t_tool else "no",
        )
        if curv is None:
            row("λ_min: curvlinops + eigsh", name, f"skipped: {reason}")
            continue
        probes = np.random.default_rng(1).standard_normal((n, 4))
        if n <= DENSE_CHECK_MAX:
            reference, against = dense_hessian(landscape, mu), "dense Hessian"
        else:
            reference, against = plain, "plain jvp(grad) HVP"
        err = relative_error(curv, reference, probes)
        stock, _ = curvlinops_operator(objective, theta, corrected=False)
        err_stock = relative_error(stock, reference, probes)
        row(
            "λ_min: curvlinops (corrected) + eigsh",
            f"{name}, n={n}",
            f"{times['curvlinops']:.3f} s = {times['curvlinops'] / t_tool:.1f}× toolkit, {curv.calls} HVPs, "
            f"rel Δλ {abs(lam_curv - lam) / max(abs(lam), 1e-300):.1e}; HVP max rel err vs {against} {err:.1e} "
            f"(stock curvlinops, jvp(jacrev) under no_grad: {err_stock:.1e})",
            "> 1×",
            "yes" if times["curvlinops"] > t_tool else "no",
        )
    print(f"peak memory {peak_mib():.0f} MiB")


def part_lanczos_vs_dense(landscape, sizes, batch):
    print("\n== 3. λ_min: Lanczos (matrix-free) vs dense eigh ==")
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
    print("\n== 4. Lanczos HVP counts to tol 1e-8, with and without deflation (docs/theory.md §9, k = 5, d = 20) ==")
    print(f"{'case':>8} {'n':>5} {'null_dim':>8} {'deflated':>8} {'HVPs':>6} {'λ_min':>14} {'residual':>9} {'converged':>9}")
    for name, mu in (("teacher", teacher_measure(K, D)), ("saddle", dead_neuron_saddle(K, D))):
        op = WassersteinHessian(landscape_small, mu)
        null = null_space(op, 1e-8)
        for deflate in (False, True):
            res = smallest_eigenpairs(op, 1, "lanczos", tol=1e-8, maxiter=5000, deflate=null.basis if deflate else None)
            hvps = res.hvp_count + (null.hvp_count if deflate else 0)
            print(
                f"{name:>8} {op.size:>5} {null.null_dim:>8} {str(deflate):>8} {hvps:>6} {res.eigenvalues[0]:>14.6e}"
                f" {res.residuals[0]:>9.1e} {str(res.converged):>9}"
            )
    print("(with deflation the count includes the null-space check: its verification HVPs)")
    print(f"peak memory {peak_mib():.0f} MiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks second-order", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--batch", type=int, default=200, help="HVP columns per batch when materialising")
    parser.add_argument("--threads", type=int, default=1, help="threads of every pool: torch and BLAS/OpenMP (default 1)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        sizes_ratio = [8, 40, 160] if args.quick else [8, 40, 160, 400]
        sizes_dense = [8, 40] if args.quick else [40, 160, 400]
        landscape = orthogonal_teacher_landscape(K, D)
        if args.device != "cpu":
            from landscape.landscape import AttentionLandscape
            from landscape.model.expectations import ExactGaussianExpectation

            exp = ExactGaussianExpectation(landscape.teacher, landscape.expectation.activation, device=args.device)
            landscape = AttentionLandscape(landscape.teacher, exp)
        print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()} (all pools pinned), float64")
        part_ratio(landscape, sizes_ratio, args.device)
        if args.device == "cpu":
            part_eigen(args.quick)
        part_lanczos_vs_dense(landscape, sizes_dense, args.batch)
        part_deflation(landscape)


if __name__ == "__main__":
    main()
