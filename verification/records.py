"""Result records of claim checks: what was claimed, what was measured, and the verdict.

A :class:`ClaimResult` is plain data (JSON round trip through :meth:`to_dict` /
:meth:`from_dict`); ``results.json`` of ``landscape verify`` holds a list of them under
``"results"`` (see :mod:`verification.runner`). Non-finite numbers are written as ``null``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Metric", "ClaimResult", "VERDICTS", "json_safe"]

VERDICTS = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class Metric:
    """A measured quantity.

    Attributes:
        value: the estimate (mean over seeds where there are several).
        uncertainty: its standard error over seeds (0 for a deterministic quantity).
        description: what it is, in words.
        applicable: False where the quantity is legitimately undefined for this run (e.g. a
            variation over plateaus when no plateau was found): it is shown as "n/a" and never
            compared with a baseline. An applicable metric that is not finite fails its claim
            (:meth:`ClaimResult.core_failures`).
    """

    value: float
    uncertainty: float = 0.0
    description: str = ""
    applicable: bool = True

    def to_dict(self) -> dict:
        return {
            "value": _finite(self.value),
            "uncertainty": _finite(self.uncertainty),
            "description": self.description,
            "applicable": self.applicable,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> "Metric":
        applicable = raw.get("applicable", True)
        if not isinstance(applicable, bool):
            raise ValueError(f"applicable must be true or false, got {applicable!r}.")
        return cls(_number(raw.get("value")), _number(raw.get("uncertainty", 0.0)), str(raw.get("description", "")), applicable)


@dataclass(frozen=True)
class ClaimResult:
    """The outcome of one claim check.

    Attributes:
        id: the claim's contract id (e.g. ``benign-landscape``).
        statement: the claim in words, with its source (docs/theory.md §10, paper section).
        verdict: ``pass``, ``fail`` or ``inconclusive``.
        metrics: name → :class:`Metric`.
        threshold: the rule the verdict applies, in words, with its numbers.
        evidence: paths (relative to the output folder) of files that back the verdict.
        table: optional rows (list of dicts) shown in reports.
        seconds: wall time of the check.
        failures: why the verdict is ``fail`` regardless of the claim's own rule: a non-finite
            applicable metric or an exception inside the check (a broken core), one line each.
    """

    id: str
    statement: str
    verdict: str
    metrics: dict[str, Metric]
    threshold: str
    evidence: list[str] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}.")

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "statement": self.statement,
            "verdict": self.verdict,
            "metrics": {name: metric.to_dict() for name, metric in self.metrics.items()},
            "threshold": self.threshold,
            "evidence": list(self.evidence),
            "table": [{k: _jsonable(v) for k, v in row.items()} for row in self.table],
            "seconds": round(self.seconds, 3),
            "failures": list(self.failures),
        }

    def core_failures(self) -> list[str]:
        """One line per applicable metric whose value is not finite (NaN or ±inf)."""
        return [
            f"metric {name} is {metric.value!r} (not finite): the core computed an undefined quantity"
            for name, metric in self.metrics.items()
            if metric.applicable and not math.isfinite(metric.value)
        ]

    @classmethod
    def from_dict(cls, raw: dict) -> "ClaimResult":
        """Parse one record; raises ``ValueError`` naming what is missing or malformed."""
        if not isinstance(raw, dict):
            raise ValueError(f"a result record must be an object, got {type(raw).__name__}.")
        missing = [key for key in ("id", "verdict", "metrics", "threshold") if key not in raw]
        if missing:
            raise ValueError(f"result record lacks {', '.join(missing)}.")
        metrics = raw["metrics"]
        if not isinstance(metrics, dict) or not all(isinstance(m, dict) for m in metrics.values()):
            raise ValueError(f"metrics of {raw['id']!r} must map names to objects.")
        evidence, table = raw.get("evidence", []), raw.get("table", [])
        if not isinstance(evidence, list):
            raise ValueError(f"evidence of {raw['id']!r} must be a list of paths, got {type(evidence).__name__}.")
        if not isinstance(table, list) or not all(isinstance(row, dict) for row in table):
            raise ValueError(f"table of {raw['id']!r} must be a list of objects.")
        failures = raw.get("failures", [])
        if not isinstance(failures, list):
            raise ValueError(f"failures of {raw['id']!r} must be a list of lines, got {type(failures).__name__}.")
        return cls(
            id=str(raw["id"]),
            statement=str(raw.get("statement", "")),
            verdict=str(raw["verdict"]),
            metrics={str(name): Metric.from_dict(m) for name, m in metrics.items()},
            threshold=str(raw["threshold"]),
            evidence=[str(e) for e in evidence],
            table=list(table),
            seconds=_number(raw.get("seconds", 0.0)),
            failures=[str(f) for f in failures],
        )


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _number(x: Any) -> float:
    if x is None:
        return math.nan
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"expected a number, got {x!r}.")
    return float(x)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    try:
        return _finite(float(value))
    except (TypeError, ValueError):
        return str(value)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by ``None`` (JSON ``null``).

    Dicts, lists and tuples are copied recursively (tuples become lists); numpy scalars and
    arrays become Python numbers and lists. Other values are returned as they are, so
    :func:`json.dumps` still refuses what is not JSON.
    """
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars
        return json_safe(obj.tolist())
    if isinstance(obj, float):
        return _finite(obj)
    return obj
