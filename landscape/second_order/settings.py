r"""Every tolerance of the second-order analysis, derived from the dtype's machine epsilon.

:func:`tolerance` is the one helper (``factor · eps^power``); :class:`AnalysisSettings`
holds the defaults built from it and reads overrides from the problem file's
``[analysis]`` table. Defaults in float64 (``eps ≈ 2.2e-16``):

===================  ==================  ======================================================
key                  default             meaning
===================  ==================  ======================================================
grad_tol             eps^½ ≈ 1.5e-8      critical when ``‖∇δL/δµ‖_{L²(µ)} ≤ grad_tol``
loss_tol             eps^½ ≈ 1.5e-8      global minimum when ``L − L* ≤ loss_tol``
lambda_tol           eps^⅓ ≈ 6.1e-6      negative curvature when ``λ_min ≤ −lambda_tol``
zero_tol             eps^⅓ ≈ 6.1e-6      an eigenvalue counts as zero when ``|λ| ≤ zero_tol``
null_tol             eps^½ ≈ 1.5e-8      a symmetry direction is deflated when ``‖Hq‖ ≤ null_tol``
eig_tol              eps^½ ≈ 1.5e-8      relative tolerance of Lanczos / LOBPCG
eig_maxiter          1000                iteration cap of the eigensolver
eigen_count          1                   how many smallest eigenpairs to report
method               "lanczos"           ``"lanczos"`` (eigsh) or ``"lobpcg"``
refine_tol           eps^¾ ≈ 1.8e-12     Newton–Krylov stops when the residual is below
refine_maxiter       30                  Newton–Krylov iteration cap
line_search_steps    12                  step sizes ``s = s₀ 2^{-j}`` tried along ψ0
line_search_start    0.5                 ``s₀`` (ψ0 is unit in L²(µ))
curvature_norm       √k                  Frobenius bound ``‖R‖_F ≤ curvature_norm`` on the map R
loss_star            (none)              a best known ``L*`` (overrides the problem's)
===================  ==================  ======================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from ..io.schema import choice, integer, known, number

__all__ = ["tolerance", "AnalysisSettings", "ANALYSIS_KEYS"]


def tolerance(dtype: torch.dtype, power: float, factor: float = 1.0) -> float:
    """``factor · eps(dtype)^power``.

    Raises:
        ValueError: unless ``dtype`` is a floating dtype, ``power > 0`` and ``factor > 0``.

    Example:
        >>> tolerance(torch.float64, 0.5) == torch.finfo(torch.float64).eps ** 0.5
        True
    """
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"tolerance needs a floating torch dtype, got {dtype!r}.")
    if not (power > 0 and factor > 0):
        raise ValueError(f"power and factor must be positive, got power={power!r}, factor={factor!r}.")
    return factor * torch.finfo(dtype).eps ** power


@dataclass(frozen=True)
class AnalysisSettings:
    """Tolerances and options of ``landscape analyze`` (see the module table)."""

    grad_tol: float
    loss_tol: float
    lambda_tol: float
    zero_tol: float
    null_tol: float
    eig_tol: float
    refine_tol: float
    eig_maxiter: int = 1000
    eigen_count: int = 1
    method: str = "lanczos"
    refine_maxiter: int = 30
    line_search_steps: int = 12
    line_search_start: float = 0.5
    curvature_norm: float | None = None
    loss_star: float | None = None

    @classmethod
    def defaults(cls, dtype: torch.dtype = torch.float64) -> "AnalysisSettings":
        """The defaults for ``dtype``."""
        return cls(
            grad_tol=tolerance(dtype, 1 / 2),
            loss_tol=tolerance(dtype, 1 / 2),
            lambda_tol=tolerance(dtype, 1 / 3),
            zero_tol=tolerance(dtype, 1 / 3),
            null_tol=tolerance(dtype, 1 / 2),
            eig_tol=tolerance(dtype, 1 / 2),
            refine_tol=tolerance(dtype, 3 / 4),
        )

    @classmethod
    def from_table(cls, table: dict | None, dtype: torch.dtype = torch.float64) -> "AnalysisSettings":
        """Defaults for ``dtype`` overridden by an ``[analysis]`` table.

        Raises:
            ValueError: naming unknown keys, or a key with a value of the wrong kind or range.
        """
        table = dict(table or {})
        known(table, "analysis", ANALYSIS_KEYS)
        readers = {
            "choice": lambda key: choice(table, "analysis", key, ("lanczos", "lobpcg"), "lanczos"),
            "count": lambda key: integer(table, "analysis", key, None, minimum=1),
            "positive": lambda key: number(table, "analysis", key, None, positive=True),
            "number": lambda key: number(table, "analysis", key, None),
        }
        values = {key: readers[ANALYSIS_KEYS[key]](key) for key in table}
        return replace(cls.defaults(dtype), **values)

    def to_dict(self) -> dict:
        """JSON-ready settings."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: the keys of ``[analysis]`` and the kind of value each takes.
ANALYSIS_KEYS: dict[str, str] = {
    "grad_tol": "positive",
    "loss_tol": "positive",
    "lambda_tol": "positive",
    "zero_tol": "positive",
    "null_tol": "positive",
    "eig_tol": "positive",
    "refine_tol": "positive",
    "eig_maxiter": "count",
    "eigen_count": "count",
    "method": "choice",
    "refine_maxiter": "count",
    "line_search_steps": "count",
    "line_search_start": "positive",
    "curvature_norm": "positive",
    "loss_star": "number",
}
