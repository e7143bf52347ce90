"""A claim's pass and fail rules as data: each :class:`Rule` gives both its verdict and its text.

A :class:`Rule` compares one named value (a metric of the claim's record, or a named
intermediate quantity the check computes) with a bound: a number, or another named value
times a factor. A :class:`Claim` holds the rules that must all hold for ``pass`` and the rules
any one of which makes it ``fail`` (``inconclusive`` otherwise), and writes the ``threshold`` text of the
record from the same rules, numbers included, so that verdict and text cannot drift apart.

A rule *holds* only when every value it reads is present and finite: an undefined value never
passes a claim, and never fails one by itself either (an applicable non-finite metric already
fails its claim in :mod:`verification.runner`; a check that must fail on an undefined
intermediate counts it in a value of its own, e.g. ``nonfinite_runs > 0``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .records import Metric

__all__ = ["OPS", "Rule", "Claim", "values_of"]

#: op → (test on (value, bound), symbol in the text). ``within``/``outside`` compare ``|value − target|`` with the bound.
OPS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "<": (operator.lt, "<"),
    "<=": (operator.le, "≤"),
    ">": (operator.gt, ">"),
    ">=": (operator.ge, "≥"),
    "==": (operator.eq, "="),
    "within": (operator.le, "≤"),
    "outside": (operator.gt, ">"),
}


@dataclass(frozen=True)
class Rule:
    """``value(metric) op bound``, or ``|value(metric) − target| op bound`` for ``within``/``outside``.

    Attributes:
        metric: the name of the value compared (a metric of the record or a named intermediate).
        op: one of :data:`OPS`.
        bound: a number, or the name of another value (then multiplied by ``scale``).
        target: the centre for ``within`` (``|x − target| ≤ bound``) and ``outside`` (``> bound``).
        scale: factor on a named bound (ignored for a numeric one).
        label: how the text names the value (default: ``metric``).
    """

    metric: str
    op: str
    bound: float | str
    target: float | None = None
    scale: float = 1.0
    label: str = ""

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"rule op must be one of {', '.join(OPS)}, got {self.op!r}.")
        if (self.target is None) == (self.op in ("within", "outside")):
            raise ValueError(f"rule on {self.metric!r}: a target goes with 'within'/'outside' only, got op {self.op!r}, target {self.target!r}.")

    def names(self) -> tuple[str, ...]:
        """The values the rule reads."""
        return (self.metric, self.bound) if isinstance(self.bound, str) else (self.metric,)

    def holds(self, values: Mapping[str, float]) -> bool:
        """Whether the rule holds on ``values`` (name → number); False if a value it reads is missing or not finite."""
        x = values.get(self.metric)
        bound = self.scale * values.get(self.bound, math.nan) if isinstance(self.bound, str) else self.bound
        if x is None or not (math.isfinite(x) and math.isfinite(bound)):
            return False
        test, _ = OPS[self.op]
        if self.target is not None:
            x = abs(x - self.target)
        return bool(test(x, bound))

    def text(self) -> str:
        """The rule in words, e.g. ``kicked_gap < 1e-05``, ``|decay_rate_ratio − 1| ≤ 0.1``, ``exp_rms < 0.5 × poly_rms``."""
        name = self.label or self.metric
        _, symbol = OPS[self.op]
        if isinstance(self.bound, str):
            bound = self.bound if self.scale == 1.0 else f"{self.scale:g} × {self.bound}"
        else:
            bound = f"{self.bound:g}"
        if self.target is not None:
            sign = "−" if self.target >= 0 else "+"
            name = f"|{name} {sign} {abs(self.target):g}|"
        return f"{name} {symbol} {bound}"


@dataclass(frozen=True)
class Claim:
    """A claim's verdict rules: ``pass`` when every pass rule holds and no fail rule does; ``fail`` when a fail rule holds."""

    passes: tuple[Rule, ...]
    fails: tuple[Rule, ...]

    def __post_init__(self) -> None:
        if not self.passes:
            raise ValueError("a claim needs at least one pass rule.")

    def verdict(self, values: Mapping[str, float]) -> str:
        """``pass``, ``fail`` or ``inconclusive`` on ``values`` (see :func:`values_of`)."""
        if any(r.holds(values) for r in self.fails):
            return "fail"
        return "pass" if all(r.holds(values) for r in self.passes) else "inconclusive"

    def threshold(self, context: str = "", note: str = "") -> str:
        """The rules in words: ``[context: ]pass: …; fail: …; inconclusive otherwise[. note]``."""
        text = f"pass: {_join(self.passes, 'and')}"
        if self.fails:
            text += f"; fail: {_join(self.fails, 'or')}"
        text += "; inconclusive otherwise"
        return (f"{context}: " if context else "") + text + (f". {note}" if note else "")


def values_of(metrics: Mapping[str, Metric], **named: float) -> dict[str, float]:
    """The values rules read: each metric's value (NaN where not applicable) and the ``named`` intermediates.

    Raises:
        ValueError: a named value has the name of a metric.
    """
    clash = sorted(named.keys() & metrics.keys())
    if clash:
        raise ValueError(f"named values {', '.join(clash)} shadow metrics of the same name.")
    values = {name: (float(m.value) if m.applicable else math.nan) for name, m in metrics.items()}
    return values | {name: float(v) for name, v in named.items()}


def _join(rules: tuple[Rule, ...], word: str) -> str:
    texts = [r.text() for r in rules]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} {word} {texts[-1]}"
