"""Run a suite of claim checks, compare with a baseline, write ``results.json``.

``results.json`` (schema 2) is one object::

    {"schema": 2, "status": "pass" | "fail", "counts": {...}, "headline": "...",
     "regressions": [...], "changes": [...], "provenance": {...}, "results": [records...]}

``results`` holds the :class:`~verification.records.ClaimResult` records (the whole file of
schema 1 was that list; every reader accepts both). Non-finite numbers are written as ``null``.

A broken core is a failed claim, not bad input: an exception inside a claim's ``check`` or a
non-finite applicable metric makes that claim ``fail`` with the reason in its ``failures``;
the other claims still run and the file is still written. The user's bad input (a non-empty
evidence folder not made by ``landscape verify``) is refused before the first claim runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from landscape.io.files import atomic_write_text, write_json

from .baseline import DEFAULT_TOLERANCE, Change, compare
from .parallel import TaskPool
from .profiles import Profile
from .records import VERDICTS, ClaimResult, json_safe
from .registry import claim_module
from .scenarios import check_evidence_dir, prepare_evidence_dir

__all__ = [
    "SCHEMA",
    "SHIPPED_BASELINES",
    "Suite",
    "compare_with",
    "format_table",
    "provenance",
    "run_suite",
    "suite_status",
    "suite_tolerances",
]

#: baselines shipped with the package, one per profile.
SHIPPED_BASELINES = Path(__file__).parent / "baselines"
#: the version of the ``results.json`` layout written by :func:`run_suite`.
SCHEMA = 2


@dataclass(frozen=True)
class Suite:
    """The outcome of :func:`run_suite`.

    Attributes:
        results: one record per claim, in suite order.
        changes: differences from the baseline (empty when none was compared).
        compared: whether a baseline was compared.
        provenance: what ran, where and how long (see :func:`provenance`).
    """

    results: list[ClaimResult]
    changes: list[Change]
    compared: bool
    provenance: dict[str, Any]

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regression]

    @property
    def status(self) -> dict[str, Any]:
        """:func:`suite_status` of this suite."""
        return suite_status([r.verdict for r in self.results], len(self.regressions) if self.compared else None)

    @property
    def failed(self) -> bool:
        """A claim failed or a metric regressed (``landscape verify`` exits 1)."""
        return self.status["status"] == "fail"

    def to_dict(self) -> dict[str, Any]:
        status = self.status
        tolerances = suite_tolerances([r.id for r in self.results])
        return json_safe({
            "schema": SCHEMA,
            **status,
            "regressions": [_change_dict(c, tolerances) for c in self.regressions],
            "changes": [_change_dict(c, tolerances) for c in self.changes],
            "provenance": self.provenance,
            "results": [r.to_dict() for r in self.results],
        })


def suite_status(verdicts: list[str], regressions: int | None) -> dict[str, Any]:
    """``status`` (``fail`` when a claim failed or a metric regressed, else ``pass``), ``counts`` and a ``headline``.

    Args:
        verdicts: the claims' verdicts.
        regressions: how many changes from the baseline are regressions; None when no
            baseline was compared.
    """
    counts = {v: sum(x == v for x in verdicts) for v in VERDICTS}
    failed = counts["fail"] > 0 or bool(regressions)
    parts = []
    if counts["fail"]:
        parts.append(f"{counts['fail']} claim{'s' if counts['fail'] != 1 else ''} failed")
    if regressions is None:
        parts.append("no baseline compared")
    else:
        parts.append(f"{regressions or 'no'} regression{'s' if regressions != 1 else ''}")
    if counts["inconclusive"]:
        parts.append(f"{counts['inconclusive']} inconclusive")
    headline = f"{'FAIL' if failed else 'PASS'}: {counts['pass']} of {len(verdicts)} claims pass; " + ", ".join(parts)
    return {
        "status": "fail" if failed else "pass",
        "counts": {**counts, "regressions": regressions},
        "headline": headline,
    }


def run_suite(
    claim_ids: list[str],
    profile: Profile,
    out: Path,
    pool: TaskPool = TaskPool(),
    log: Callable[[str], None] = lambda line: None,
    baseline: list[ClaimResult] | None = None,
    context: dict[str, Any] | None = None,
) -> Suite:
    """Check each claim in turn (evidence under ``out/<id>/``), compare with ``baseline``, write ``out/results.json``.

    Args:
        claim_ids: the claims, in order.
        profile: how much work each does.
        out: the output folder (created).
        pool: where seeds and sweeps run.
        log: receives one line per claim started and finished.
        baseline: records to compare with; None for no comparison.
        context: extra provenance (``command``, ``baseline`` file), see :func:`provenance`.

    Returns:
        the :class:`Suite`; ``out/results.json`` holds :meth:`Suite.to_dict` (written atomically).

    Raises:
        ValueError: an evidence folder ``out/<id>`` exists, is not empty and was not made by
            ``landscape verify`` (checked for every claim before the first runs).
    """
    for claim_id in claim_ids:
        check_evidence_dir(out / claim_id)
    out.mkdir(parents=True, exist_ok=True)
    started_suite = time.perf_counter()
    results = []
    for claim_id in claim_ids:
        started = time.perf_counter()
        log(f"checking {claim_id} ({profile.name}) …")
        result = _check(claim_id, profile, prepare_evidence_dir(out / claim_id), pool)
        result = replace(result, seconds=time.perf_counter() - started)
        log(f"  {claim_id}: {result.verdict} ({result.seconds:.1f} s)" + "".join(f"\n    {f}" for f in result.failures))
        results.append(result)
    changes = compare_with(results, baseline) if baseline is not None else []
    meta = provenance(profile, results, time.perf_counter() - started_suite, context or {})
    suite = Suite(results, changes, baseline is not None, meta)
    write_json(out / "results.json", suite.to_dict())
    return suite


def _check(claim_id: str, profile: Profile, folder: Path, pool: TaskPool) -> ClaimResult:
    """Run one claim's check; an exception or a non-finite applicable metric makes it ``fail`` with the reason."""
    module = None
    try:
        module = claim_module(claim_id)
        result = module.check(profile, folder, pool)
    except Exception as err:  # noqa: BLE001 - a broken core fails its claim; KeyboardInterrupt/SystemExit pass
        message = " ".join(str(err).split()) or "(no message)"
        atomic_write_text(folder / "traceback.txt", traceback.format_exc())
        return ClaimResult(
            id=claim_id,
            statement=getattr(module, "STATEMENT", ""),
            verdict="fail",
            metrics={},
            threshold="the check runs to its end",
            evidence=[f"{folder.name}/traceback.txt"],
            failures=[f"the check raised {type(err).__name__}: {message}"],
        )
    failures = result.core_failures()
    if failures:
        result = replace(result, verdict="fail", failures=[*result.failures, *failures])
    return result


def provenance(profile: Profile, results: list[ClaimResult], seconds: float, context: dict[str, Any]) -> dict[str, Any]:
    """What ran and where: ``context`` (command line, baseline file), profile, versions, threads, date, times.

    The git commit is read when the package is a git checkout (None otherwise, silently);
    BLAS libraries and their threads come from :func:`threadpoolctl.threadpool_info`.
    """
    import numpy
    import scipy
    import torch

    try:
        version = importlib.metadata.version("attention-landscape")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {
        **context,
        "profile": profile.name,
        "package_version": version,
        **_git_state(Path(__file__).resolve().parents[1]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "torch_threads": torch.get_num_threads(),
        "blas": _blas(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": {"total": round(seconds, 3), "per_claim": {r.id: round(r.seconds, 3) for r in results}},
    }


def _git_state(folder: Path) -> dict[str, Any]:
    """``git_commit`` and ``git_dirty`` (tracked files modified) of ``folder`` when it is a checkout; None otherwise."""
    state: dict[str, Any] = {"git_commit": None, "git_dirty": None}
    if not (folder / ".git").exists():
        return state
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return state
    if head.returncode == 0:
        state["git_commit"] = head.stdout.strip()
        state["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    return state


def _blas() -> list[dict[str, Any]]:
    """The BLAS/OpenMP libraries loaded, with their versions and thread counts (empty without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "num_threads", "threading_layer")
    return [{k: info.get(k) for k in keys} for info in threadpool_info()]


def suite_tolerances(claim_ids: list[str]) -> dict:
    """Per-claim metric tolerances, as stated in the claim modules."""
    return {claim_id: getattr(claim_module(claim_id), "TOLERANCES", {}) for claim_id in claim_ids}


def _change_dict(change: Change, tolerances: dict) -> dict[str, Any]:
    """A change as JSON: claim, metric, old, new, the metric's tolerance (None for a verdict) and the note."""
    tol = None
    if change.metric != "verdict":
        tol = dataclasses.asdict(tolerances.get(change.claim, {}).get(change.metric, DEFAULT_TOLERANCE))
    return {"claim": change.claim, "metric": change.metric, "old": change.old, "new": change.new,
            "tolerance": tol, "regression": change.regression, "note": change.note}


def format_table(results: list[ClaimResult]) -> str:
    """A plain-text table: claim, verdict, key metric (with its uncertainty), time."""
    from reports.numbers import format_uncertain

    rows = [("claim", "verdict", "key metric", "time")]
    for r in results:
        name, metric = next(iter(r.metrics.items()), ("-", None))
        if metric is None:
            value = "-"
        else:
            value = f"{name} = " + (format_uncertain(metric.value, metric.uncertainty) if metric.applicable else "n/a")
        rows.append((r.id, r.verdict, value, f"{r.seconds:.1f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def compare_with(results: list[ClaimResult], baseline: list[ClaimResult]) -> list[Change]:
    """Changes against ``baseline`` for the claims that ran; metrics not applicable on either side are not compared."""
    skip = {(r.id, name) for r in (*results, *baseline) for name, m in r.metrics.items() if not m.applicable}

    def applicable(records: list[ClaimResult]) -> list[ClaimResult]:
        return [replace(r, metrics={n: m for n, m in r.metrics.items() if (r.id, n) not in skip}) for r in records]

    return compare(applicable(results), applicable(baseline), suite_tolerances([r.id for r in results]))
