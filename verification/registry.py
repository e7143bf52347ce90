"""The claims, by contract id, and the modules of :mod:`verification.claims` that check them.

Each module defines ``CLAIM_ID``, ``STATEMENT``, ``TOLERANCES`` (metric → :class:`Tolerance`),
``rules() -> Claim`` (:mod:`verification.rules`: its verdict and threshold text) and
``check(profile, out, pool) -> ClaimResult``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["PAPER_CLAIMS", "EXTRA_CHECKS", "ALL_CHECKS", "claim_module", "resolve_ids"]

#: docs/theory.md §10, in the paper's order (ids are contract).
PAPER_CLAIMS = {
    "expressivity": "verification.claims.expressivity",
    "benign-landscape": "verification.claims.benign_landscape",
    "saddle-avoidance": "verification.claims.saddle_avoidance",
    "rates": "verification.claims.rates",
    "conditioning": "verification.claims.conditioning",
    "two-timescale": "verification.claims.two_timescale",
    "birth-death": "verification.claims.birth_death",
}
#: checks the paper suggests beyond its proofs.
EXTRA_CHECKS: dict[str, str] = {
    "real-data": "verification.claims.real_data",
    "feature-mismatch": "verification.claims.feature_mismatch",
    "ill-conditioning": "verification.claims.ill_conditioning",
    "collinear-teacher": "verification.claims.collinear_teacher",
    "escape-vs-dimension": "verification.claims.escape_vs_dimension",
    "joint-training": "verification.claims.joint_training",
    "paper-scale": "verification.claims.paper_scale",
}

ALL_CHECKS = {**PAPER_CLAIMS, **EXTRA_CHECKS}


def claim_module(claim_id: str) -> ModuleType:
    """The module checking ``claim_id``; ``ValueError`` for an unknown id."""
    try:
        return importlib.import_module(ALL_CHECKS[claim_id])
    except KeyError:
        raise ValueError(f"unknown claim {claim_id!r}; expected one of: {', '.join(ALL_CHECKS)}.") from None


def resolve_ids(ids: list[str] | None) -> list[str]:
    """The requested ids in suite order (all when ``ids`` is empty); ``ValueError`` on unknown ids."""
    if not ids:
        return list(ALL_CHECKS)
    unknown = [i for i in ids if i not in ALL_CHECKS]
    if unknown:
        raise ValueError(f"unknown claim(s) {', '.join(map(repr, unknown))}; expected: {', '.join(ALL_CHECKS)}.")
    return [i for i in ALL_CHECKS if i in ids]
