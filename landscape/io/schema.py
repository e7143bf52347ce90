"""One validator for every TOML table the toolkit reads: problem, init, dynamics, analysis, run config.

Each reader takes the parsed table, the table's name as the user wrote it (``"dynamics"``,
``"dynamics.birth_death"``) and the key, and returns the value or the default when the key
is absent. Every refusal is one ``ValueError`` line in one format::

    [table] key must be <what>, got <the value, cut to 80 characters>.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

__all__ = ["LARGEST", "boolean", "choice", "finite", "integer", "known", "number", "short", "table"]

#: the largest magnitude accepted for a scale (noise, ridge, a stated loss, teacher weights):
#: squares and sums of products of a few such numbers stay far below the float64 overflow at
#: 1.8e308, so an absurd finite value is refused naming its key instead of overflowing later.
LARGEST = 1e100


def table(value: Any, name: str) -> dict:
    """``value`` as a table (an absent table is empty); ``ValueError`` when it is not a table."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"[{name}] must be a table, got {type(value).__name__}.")
    return value


def known(values: dict, name: str, keys: Iterable[str]) -> None:
    """Refuse keys of ``values`` outside ``keys``, naming them and the known ones."""
    keys = list(keys)
    unknown = sorted(set(values) - set(keys))
    if unknown:
        raise ValueError(f"unknown key(s) in [{name}]: {', '.join(unknown)} (known: {', '.join(keys)}).")


def choice(values: dict, name: str, key: str, options: tuple[str, ...], default: str) -> str:
    """One of ``options``."""
    value = values.get(key, default)
    if value not in options:
        raise ValueError(f"[{name}] {key} must be one of {', '.join(map(repr, options))}, got {short(value)}.")
    return value


def integer(values: dict, name: str, key: str, default: int | None, minimum: int) -> int | None:
    """An integer ``≥ minimum`` (booleans refused)."""
    if key not in values:
        return default
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"[{name}] {key} must be an integer ≥ {minimum}, got {short(value)}.")
    return value


def number(
    values: dict,
    name: str,
    key: str,
    default: float | None,
    minimum: float | None = None,
    positive: bool = False,
    maximum: float | None = None,
) -> float | None:
    """A finite number, ``≥ minimum`` and ``≤ maximum`` when given and ``> 0`` when ``positive`` (booleans refused)."""
    if key not in values:
        return default
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not finite(value):
        raise ValueError(f"[{name}] {key} must be a finite number, got {short(value)}.")
    if positive and value <= 0:
        raise ValueError(f"[{name}] {key} must be > 0, got {short(value)}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"[{name}] {key} must be ≥ {minimum:g}, got {short(value)}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"[{name}] {key} must be ≤ {maximum:g}, got {short(value)}.")
    return float(value)


def boolean(values: dict, name: str, key: str, default: bool) -> bool:
    """``true`` or ``false``."""
    value = values.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"[{name}] {key} must be true or false, got {short(value)}.")
    return value


def finite(value: int | float) -> bool:
    """Whether ``value`` is finite (an integer beyond the float range is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def short(value: Any) -> str:
    """``repr(value)``, cut to 80 characters (a fuzzed value can be huge)."""
    try:
        text = repr(value)
    except ValueError:  # an integer with too many digits to print
        return f"an integer of about {value.bit_length()} bits"
    return text if len(text) <= 80 else text[:77] + "..."
