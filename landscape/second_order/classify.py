r"""Classifying a critical point with certificates (docs/theory.md §8).

:func:`analyze` runs the pipeline measure → (refinement) → Wasserstein Hessian → null
directions → smallest eigenpairs → verdict → certificate, with every threshold taken from
:class:`~landscape.second_order.settings.AnalysisSettings`:

* ``not_critical``: ``g > grad_tol``;
* ``global_minimum``: ``L − L* ≤ loss_tol`` (``L*`` known, stated, or ``[analysis] loss_star``);
* ``strict_saddle``: ``λ_min ≤ −lambda_tol`` on the complement of the null directions;
  the certificate is ψ0, its residual ``r``, the interval ``[λ − r, λ + r]`` (certain to
  hold an eigenvalue) and a line search showing ``L((id + sψ0)_#µ) < L(µ)``;
* ``degenerate``: no negative curvature but ``L − L* > loss_tol`` — the theorem says this
  never happens, so :attr:`Analysis.warnings` carries a loud message;
* ``second_order_stationary``: no negative curvature, ``L*`` unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..landscape import AttentionLandscape, Evaluation
from ..model.measure import ParticleMeasure
from .eigensolvers import EigenResult, smallest_eigenpairs
from .flat_variation import CurvatureTest, curvature_test
from .nullspace import NullSpace, null_space
from .operators import WassersteinHessian
from .refine import RefineResult, refine
from .settings import AnalysisSettings

__all__ = ["VERDICTS", "HessianReport", "Analysis", "hessian_report", "line_search", "analyze"]

VERDICTS = ("global_minimum", "strict_saddle", "degenerate", "second_order_stationary", "not_critical")


@dataclass
class HessianReport:
    """Spectral facts of the Wasserstein Hessian at ``µ``.

    Attributes:
        eigen: the smallest eigenpairs on the complement of the null directions.
        null: the deflated null space.
        zero_count: ``null_dim`` plus the computed eigenvalues with ``|λ| ≤ zero_tol``.
        zero_count_complete: False when every computed eigenvalue was within tolerance of
            zero up to the whole complement's size cap (then ``zero_count`` is a lower bound).
        zero_count_hvps: Hessian-vector products spent counting zeros (not in ``eigen.hvp_count``).
    """

    eigen: EigenResult
    null: NullSpace
    zero_count: int
    zero_count_complete: bool
    zero_count_hvps: int = 0

    @property
    def lambda_min(self) -> float:
        return float(self.eigen.eigenvalues[0])

    def to_dict(self, count: int) -> dict:
        e = self.eigen
        return {
            "lambda_min": self.lambda_min,
            "residual": float(e.residuals[0]),
            "interval": e.intervals()[0].tolist(),
            "null_dim": self.null.null_dim,
            "symmetry_dim": self.null.symmetry_dim,
            "null_residual": self.null.residual,
            "null_spectrum": self.null.spectrum.tolist(),
            "null_families": self.null.counts,
            "zero_count": self.zero_count,
            "zero_count_complete": self.zero_count_complete,
            "zero_count_hvp_count": self.zero_count_hvps,
            "converged": e.converged,
            "hvp_count": e.hvp_count,
            "iterations": e.iterations,
            "method": e.method,
            "eigenvalues": e.eigenvalues[:count].tolist(),
            "residuals": e.residuals[:count].tolist(),
        }


@dataclass
class Analysis:
    """Everything ``landscape analyze`` reports.

    Attributes:
        verdict: one of :data:`VERDICTS`.
        measure: the analysed measure (refined when refinement ran).
        evaluation: the core's :class:`~landscape.landscape.Evaluation` of it.
        loss_star: the ``L*`` used, or None.
        hessian: the spectral report.
        psi0: ``(ψ_a (M, k), ψ_w (M, d))``, unit in L²(µ).
        certificate: the strict-saddle certificate (eigenpair, interval, line search), or None.
        curvature: the curvature test at a non-global critical point, or None.
        refinement: the Newton–Krylov record, or None.
        warnings: messages that must be shown (degenerate verdict, non-convergence).
    """

    verdict: str
    measure: ParticleMeasure
    evaluation: Evaluation
    loss_star: float | None
    hessian: HessianReport
    psi0: tuple[np.ndarray, np.ndarray]
    settings: AnalysisSettings
    certificate: dict | None = None
    curvature: CurvatureTest | None = None
    refinement: RefineResult | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """``evaluate``'s keys plus ``classification``, ``hessian`` and the rest; JSON-ready."""
        out = self.evaluation.to_dict()
        out["loss_star"] = self.loss_star
        out.update(
            classification=self.verdict,
            hessian=self.hessian.to_dict(self.settings.eigen_count),
            certificate=self.certificate,
            curvature=None if self.curvature is None else self.curvature.to_dict(),
            refinement=None if self.refinement is None else self.refinement.to_dict(),
            settings=self.settings.to_dict(),
            warnings=self.warnings,
        )
        return out


def hessian_report(operator: WassersteinHessian, settings: AnalysisSettings) -> HessianReport:
    """Null space, smallest eigenpairs and zero count of ``operator`` under ``settings``.

    ``λ_min``, ψ0 and the ``eigen_count`` smallest pairs come from ``settings.method``.
    Zeros are counted with the block solver (LOBPCG: single-vector Lanczos resolves the
    multiplicity of a repeated eigenvalue poorly) on a block that starts at
    ``max(eigen_count + 1, 4)`` and doubles while every eigenvalue found is ``≤ zero_tol``.
    """
    null = null_space(operator, settings.null_tol)
    free = operator.size - null.null_dim
    if free == 0:
        raise ValueError(f"all {operator.size} directions are symmetry null directions: no spectrum is left to judge.")
    eigen = smallest_eigenpairs(
        operator, min(settings.eigen_count, free), settings.method, settings.eig_tol, settings.eig_maxiter, deflate=null.basis
    )
    count = min(max(settings.eigen_count + 1, 4), free)
    while True:
        block = smallest_eigenpairs(operator, count, "lobpcg", settings.eig_tol, settings.eig_maxiter, deflate=null.basis)
        if block.eigenvalues[-1] > settings.zero_tol or count == free:
            break
        count = min(2 * count, free)
    zeros = int(np.sum(np.abs(block.eigenvalues) <= settings.zero_tol))
    complete = bool(block.eigenvalues[-1] > settings.zero_tol or count == free)
    return HessianReport(eigen, null, null.null_dim + zeros, complete, block.hvp_count)


def line_search(
    landscape: AttentionLandscape, measure: ParticleMeasure, psi: tuple[np.ndarray, np.ndarray], start: float, steps: int, curvature: float
) -> dict:
    """``L((id + sψ)_#µ)`` for ``s = start·2^{-j}``, ``j < steps``, beside ``½λs²``.

    A step is resolvable when the predicted change ``½|λ|s²`` exceeds ``100·eps·max(1, |L|)``.
    ``decreases`` is True when the smallest resolvable step lowers ``L``; ``certified_up_to``
    is the largest ``s`` such that every resolvable step up to it lowers ``L`` (else None).
    """
    objective, theta = landscape.objective(measure)
    flat = torch.as_tensor(np.concatenate(psi, axis=1).reshape(-1), dtype=theta.dtype, device=theta.device)
    with torch.no_grad():
        base = float(objective(theta))
        eps = torch.finfo(theta.dtype).eps
        margin = 100 * eps * max(1.0, abs(base))
        rows = []
        for j in range(steps):
            s = start * 2.0**-j
            rows.append({"s": s, "loss": float(objective(theta + s * flat)), "predicted_change": 0.5 * curvature * s * s})
    resolvable = [r for r in rows if abs(r["predicted_change"]) > margin]
    certified_up_to = None
    for r in reversed(resolvable):  # from the smallest step upward
        if r["loss"] < base:
            certified_up_to = r["s"]
        else:
            break
    return {"loss": base, "steps": rows, "decreases": certified_up_to is not None, "certified_up_to": certified_up_to}


def analyze(
    landscape: AttentionLandscape,
    measure: ParticleMeasure,
    settings: AnalysisSettings | None = None,
    refine_first: bool = False,
) -> Analysis:
    """Refine (optionally), evaluate, compute the Hessian report and classify ``measure``.

    Raises:
        ValueError: when the measure does not fit the problem, has a zero weight, or
            Σ_µµ is singular.
    """
    settings = settings or AnalysisSettings.defaults(landscape.dtype)
    landscape.check_measure(measure)
    refinement = None
    if refine_first:
        refinement = refine(landscape, measure, settings.refine_tol, settings.refine_maxiter)
        measure = refinement.measure
    evaluation = landscape.evaluate(measure)
    loss_star = settings.loss_star if settings.loss_star is not None else evaluation.loss_star
    operator = WassersteinHessian(landscape, measure)
    report = hessian_report(operator, settings)
    psi = _signed(report.eigen.vectors[:, 0])
    psi0 = operator.to_field(psi)
    lam, res = report.lambda_min, float(report.eigen.residuals[0])
    warnings = list(refinement.warnings) if refinement is not None else []
    if not report.eigen.converged:
        warnings.append(f"the eigensolver did not converge (residual {res:.3e}); λ_min = {lam:.6g} is not certified.")
    certificate = None
    if evaluation.grad_norm > settings.grad_tol:
        verdict = "not_critical"
    elif loss_star is not None and evaluation.loss - loss_star <= settings.loss_tol:
        verdict = "global_minimum"
    elif lam <= -settings.lambda_tol:
        verdict = "strict_saddle"
        search = line_search(landscape, measure, psi0, settings.line_search_start, settings.line_search_steps, lam)
        certified = lam + res <= -settings.lambda_tol and search["decreases"]
        certificate = {"lambda": lam, "residual": res, "interval": [lam - res, lam + res], "line_search": search, "certified": certified}
        if not certified:
            warnings.append("strict saddle not certified: the eigen-interval or the line search along ψ0 fails.")
    elif loss_star is not None:
        verdict = "degenerate"
        warnings.append(
            f"DEGENERATE CRITICAL POINT: no negative curvature (λ_min = {lam:.3e} > −{settings.lambda_tol:.1e}) "
            f"but L − L* = {evaluation.loss - loss_star:.3e} > {settings.loss_tol:.1e}. The landscape theorem says "
            "this never happens: if it persists under refinement and tighter tolerances it is a counterexample."
        )
    else:
        verdict = "second_order_stationary"
    curvature = None
    if verdict in ("strict_saddle", "degenerate", "second_order_stationary"):
        curvature = curvature_test(landscape, measure, settings.curvature_norm)
    return Analysis(verdict, measure, evaluation, loss_star, report, psi0, settings, certificate, curvature, refinement, warnings)


def _signed(v: torch.Tensor) -> torch.Tensor:
    """``v`` with the sign that makes its largest-magnitude entry positive (a deterministic ψ0)."""
    return v if v[torch.argmax(v.abs())] >= 0 else -v
