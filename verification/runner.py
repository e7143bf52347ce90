"""Run a suite of claim checks, write ``results.json``, compare with a baseline."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from landscape.io import write_json

from .baseline import Change, compare
from .parallel import TaskPool
from .profiles import Profile
from .records import ClaimResult
from .registry import claim_module
from .scenarios import prepare_evidence_dir

__all__ = ["run_suite", "format_table", "suite_tolerances", "SHIPPED_BASELINES"]

#: baselines shipped with the package, one per profile.
SHIPPED_BASELINES = Path(__file__).parent / "baselines"


def run_suite(
    claim_ids: list[str],
    profile: Profile,
    out: Path,
    pool: TaskPool = TaskPool(),
    log: Callable[[str], None] = lambda line: None,
) -> list[ClaimResult]:
    """Check each claim in turn; each writes its evidence under ``out/<id>/``.

    Returns the records in order and writes them to ``out/results.json`` (atomically).
    """
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for claim_id in claim_ids:
        module = claim_module(claim_id)
        started = time.perf_counter()
        log(f"checking {claim_id} ({profile.name}) …")
        result = module.check(profile, prepare_evidence_dir(out / claim_id), pool)
        result = replace(result, seconds=time.perf_counter() - started)
        log(f"  {claim_id}: {result.verdict} ({result.seconds:.1f} s)")
        results.append(result)
    write_json(out / "results.json", [r.to_dict() for r in results])
    return results


def suite_tolerances(claim_ids: list[str]) -> dict:
    """Per-claim metric tolerances, as stated in the claim modules."""
    return {claim_id: getattr(claim_module(claim_id), "TOLERANCES", {}) for claim_id in claim_ids}


def format_table(results: list[ClaimResult], changes: list[Change] | None = None) -> str:
    """A plain-text table: claim, verdict, key metric, threshold, regressions."""
    regressed = {c.claim for c in changes or [] if c.regression}
    rows = [("claim", "verdict", "key metric", "regressed")]
    for r in results:
        name, metric = next(iter(r.metrics.items()), ("-", None))
        value = "-" if metric is None else f"{name} = {metric.value:.4g}" + (f" ± {metric.uncertainty:.2g}" if metric.uncertainty else "")
        rows.append((r.id, r.verdict, value, "yes" if r.id in regressed else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def compare_with(results: list[ClaimResult], baseline: list[ClaimResult]) -> list[Change]:
    """Changes against ``baseline`` for the claims that ran."""
    return compare(results, baseline, suite_tolerances([r.id for r in results]))
