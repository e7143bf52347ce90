"""A claim module for testing the verification framework quickly (not a real claim)."""

from __future__ import annotations

import math
from pathlib import Path

from verification.baseline import Tolerance
from verification.records import ClaimResult, Metric

CLAIM_ID = "toy"
STATEMENT = "2^10 = 1024 (a toy claim for framework tests)."
TOLERANCES = {"power": Tolerance(rtol=1e-12, atol=0.0)}


def check(profile, out: Path, pool) -> ClaimResult:
    (value,) = pool.map(math.pow, [(2.0, 10.0)])
    (out / "evidence.txt").write_text(f"{value}\n")
    return ClaimResult(
        id=CLAIM_ID,
        statement=STATEMENT,
        verdict="pass" if value == 1024 else "fail",
        metrics={"power": Metric(value, 0.0, "2^10")},
        threshold="pass: power = 1024",
        evidence=[f"{out.name}/evidence.txt"],
    )
