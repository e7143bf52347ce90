"""Numbers as people read them: a few significant digits, the uncertainty in concise notation.

``format_uncertain(3.9712e-9, 5.3e-11) == "3.97(5)e-9"``: the digits in parentheses are the
uncertainty in units of the value's last digit. The uncertainty keeps two significant digits
when its three leading digits are 100–354 or 950–999 and one otherwise (close to the Particle
Data Group's rule: never a lone 1, 2 or 3); the value is rounded to the same place. Full
precision stays in ``results.json``; these strings are for the page only.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

__all__ = ["format_uncertain", "format_number"]

#: a value needing more significant digits than this (a tiny uncertainty) is written ``v ± e``.
MAX_DIGITS = 6


def format_number(value: Any, digits: int = 4) -> str:
    """A float to ``digits`` significant digits (``n/a`` for None or NaN); any other value as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def format_uncertain(value: float | None, err: float | None = None, digits: int = 4) -> str:
    """``value`` with its standard uncertainty ``err`` in concise notation, e.g. ``0.973(12)`` or ``3.97(5)e-9``.

    Args:
        value: the estimate; None or NaN gives ``n/a``.
        err: its uncertainty; None, 0 or not finite gives the value alone to ``digits`` significant digits.
        digits: significant digits of a value shown without uncertainty (and in the ``±`` forms).

    An uncertainty as large as the value, or one so small that the value would need more than
    :data:`MAX_DIGITS` digits, is written ``value ± err`` instead.
    """
    if value is None or not math.isfinite(value) or err is None or not math.isfinite(err) or err <= 0:
        return format_number(None if value is None else float(value), digits)
    if err >= abs(value):
        return f"{value:.{min(digits, 3)}g} ± {err:.2g}"
    exponent = math.floor(math.log10(err))
    leading = err / 10.0 ** (exponent - 2)  # the three leading digits, 100 ≤ leading < 1000
    place = exponent - 1 if leading < 355 or leading >= 950 else exponent  # the uncertainty's last digit
    err_digits = round(err / 10.0**place)
    if err_digits >= 100:  # 99.5… rounds into the next decade: 10 of the next place
        place += 1
        err_digits = round(err / 10.0**place)
    value_digits = round(value / 10.0**place)
    width = len(str(abs(value_digits)))
    if width > MAX_DIGITS:
        return f"{value:.{digits}g} ± {err:.2g}"
    magnitude = width - 1 + place  # the exponent of the rounded value's leading digit
    if place <= 0 and -2 <= magnitude <= 3:
        return f"{_decimal(value_digits, place)}({err_digits})"
    return f"{_decimal(value_digits, place - magnitude)}({err_digits})e{magnitude}"


def _decimal(digits: int, shift: int) -> str:
    """``digits · 10^shift`` written exactly in fixed notation (``shift ≤ 0``)."""
    return format(Decimal(digits).scaleb(shift), "f")
