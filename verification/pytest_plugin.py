"""A pytest plugin so users can put the paper's claims in their own CI.

Installed with the package (entry point ``pytest11``); it provides the fixture
``verify_claim``. In a test file::

    def test_saddle_avoidance_still_holds(verify_claim):
        verify_claim("saddle-avoidance", profile="quick", baseline="shipped")

The fixture runs the named claim into a temporary folder, compares it with the baseline
(``"shipped"``: the baseline shipped for the profile; a path: a ``results.json`` of an
earlier ``landscape verify``; None: no comparison) and fails the test, listing what
changed, when the claim's verdict is ``fail`` or any metric regressed. It returns the
:class:`~verification.records.ClaimResult` for further assertions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from .baseline import load_baseline
from .parallel import TaskPool
from .profiles import get_profile
from .records import ClaimResult
from .registry import resolve_ids
from .runner import SHIPPED_BASELINES, run_suite


@pytest.fixture
def verify_claim(tmp_path_factory) -> Callable[..., ClaimResult]:
    """Run one claim and fail the test on a failed verdict or a regression (see the module doc)."""

    def run(claim_id: str, profile: str = "quick", baseline: str | Path | None = "shipped", jobs: int = 1) -> ClaimResult:
        (claim,) = resolve_ids([claim_id])
        prof = get_profile(profile)
        out = tmp_path_factory.mktemp(f"claim-{claim}")
        records = None
        if baseline is not None:
            path = SHIPPED_BASELINES / f"{prof.name}.json" if baseline == "shipped" else Path(baseline)
            records = load_baseline(path)  # validated before the run
        suite = run_suite([claim], prof, out, TaskPool(jobs=jobs), baseline=records)
        (result,) = suite.results
        problems = []
        if result.verdict == "fail":
            problems.append(f"claim {claim!r} failed: " + ("; ".join(result.failures) or result.threshold))
        problems += [c.line() for c in suite.regressions]
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)
        return result

    return run
