"""One-line bugs in the numerical core that the quick profile of ``landscape verify`` must flag.

Each :class:`Mutant` names a file of the core, an exact substring that must occur in it
exactly once (so that the list fails loudly instead of rotting when the code changes),
its replacement, and the smallest set of claims whose quick profile turns to ``fail`` on
it (measured; ``tests/contract/test_mutation.py`` asserts it). The first eight are the kinds found
unnoticed or crashing in issue 12; the rest are other realistic slips across the core.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Mutant", "MUTANTS"]


@dataclass(frozen=True)
class Mutant:
    """A one-line change to a copy of the packages.

    Attributes:
        name: identifier (used as the test id).
        path: file relative to the repository root.
        original: exact text, found exactly once in ``path``.
        replacement: what it becomes.
        claims: claim ids whose quick profile must flag it (exit status 1).
    """

    name: str
    path: str
    original: str
    replacement: str
    claims: tuple[str, ...]


MUTANTS: tuple[Mutant, ...] = (
    # --- the kinds issue 12 lists -------------------------------------------------------------------
    Mutant(
        "deflation-off",
        "landscape/second_order/classify.py",
        "settings.method, settings.eig_tol, settings.eig_maxiter, deflate=null.basis",
        "settings.method, settings.eig_tol, settings.eig_maxiter, deflate=None",
        ("benign-landscape",),
    ),
    Mutant("relu-linear-term-halved", "landscape/model/kernels.py", "/ (2.0 * math.pi) + 0.5 * c", "/ (2.0 * math.pi) + 0.25 * c", ("expressivity",)),
    Mutant(
        "hermite-recurrence-index",
        "landscape/model/kernels.py",
        "math.sqrt(n) * table[n - 1]",
        "math.sqrt(n - 1) * table[n - 1]",
        ("expressivity",),
    ),
    Mutant(
        "curvature-r1-from-mu-only",
        "landscape/second_order/flat_variation.py",
        "r1 = max(float(np.linalg.norm(measure.a, axis=1).max()), float(np.linalg.norm(nu.a, axis=1).max()))",
        "r1 = float(np.linalg.norm(measure.a, axis=1).max())",
        ("benign-landscape",),
    ),
    Mutant(
        "teacher-features-with-student-activation",
        "landscape/model/expectations.py",
        "act = self.teacher.activation",
        "act = self.activation",
        ("expressivity",),
    ),
    Mutant(
        "finite-n-term-dropped",
        "landscape/landscape.py",
        "return (1.0 - 1.0 / n) * b + (fourth + self.noise**2 * sigma_mm) / n",
        "return (1.0 - 1.0 / n) * b",
        ("expressivity",),
    ),
    Mutant(
        "erf-kernel-constant",
        "landscape/model/kernels.py",
        "return (2.0 / math.pi) * torch.atan2(x, cos)",
        "return (1.0 / math.pi) * torch.atan2(x, cos)",
        ("expressivity",),
    ),
    Mutant(  # the default (fast) engine's line; flow.py's reference twin is held to it by tests/dynamics/test_fast_field.py
        "velocity-not-divided-by-p",
        "landscape/dynamics/fast_field.py",
        "vel = np.concatenate((pc * grad_a, grad_w), axis=1) / pc",
        "vel = np.concatenate((pc * grad_a, grad_w), axis=1)",
        ("rates",),
    ),
    # --- other realistic slips ----------------------------------------------------------------------
    Mutant(
        "gamma-star-transposed",
        "landscape/landscape.py",
        "return torch.linalg.solve(self._ridged(sigma_mm), b) @ torch.linalg.pinv(a_n, hermitian=True)",
        "return (torch.linalg.solve(self._ridged(sigma_mm), b) @ torch.linalg.pinv(a_n, hermitian=True)).T",
        ("expressivity",),
    ),
    Mutant(
        "noise-dropped-from-k-mu",
        "landscape/landscape.py",
        "(fourth + self.noise**2 * sigma_mm) / n",
        "fourth / n",
        ("expressivity",),
    ),
    Mutant(
        "first-variation-sign",
        "landscape/landscape.py",
        "value = ((probe_a @ g_mm) * m.with_model).sum(-1) + ((probe_a @ g_mt) * m.with_teacher).sum(-1)",
        "value = ((probe_a @ g_mm) * m.with_model).sum(-1) - ((probe_a @ g_mt) * m.with_teacher).sum(-1)",
        ("benign-landscape",),
    ),
    Mutant(
        "loss-half-dropped",
        "landscape/landscape.py",
        "return 0.5 * (torch.trace(sigma_tt) + self.noise**2 - explained)",
        "return (torch.trace(sigma_tt) + self.noise**2 - explained)",
        ("expressivity",),
    ),
    Mutant(
        "cross-moment-unweighted",
        "landscape/model/expectations.py",
        "sigma_mt = ap.T @ self._kernel_teacher(w) @ self._c",
        "sigma_mt = a.T @ self._kernel_teacher(w) @ self._c",
        ("expressivity",),
    ),
    Mutant(
        "relu-antiparallel-limit",
        "landscape/model/kernels.py",
        "limit = -math.pi * torch.clamp(c, max=0.0)",
        "limit = -math.pi * torch.clamp(c, min=0.0)",
        ("expressivity",),
    ),
    Mutant("mehler-bias-sign", "landscape/model/kernels.py", "z = z + bias[:, None]", "z = z - bias[:, None]", ("expressivity",)),
    Mutant(
        "hermite-weight-normalisation",
        "landscape/model/kernels.py",
        "weights = self.step * np.exp(-0.25 * nodes**2) / math.sqrt(2.0 * math.pi)",
        "weights = self.step * np.exp(-0.25 * nodes**2) / math.sqrt(math.pi)",
        ("expressivity",),
    ),
    Mutant(
        "fourth-moment-without-teacher-norm",
        "landscape/model/expectations.py",
        "q = q + (h * f_sq[:, None]).T @ h",
        "q = q + h.T @ h",
        ("expressivity",),
    ),
    Mutant(
        "pushed-teacher-without-neuron-count",
        "landscape/second_order/flat_variation.py",
        "return ParticleMeasure(teacher.neurons * c @ np.asarray(r).T, u)",
        "return ParticleMeasure(c @ np.asarray(r).T, u)",
        ("benign-landscape",),
    ),
    Mutant(
        "curvature-bound-constant",
        "landscape/second_order/flat_variation.py",
        "const = 4.0 / (k * r1**2)",
        "const = 4.0 / (k * r1)",
        ("benign-landscape",),
    ),
)
