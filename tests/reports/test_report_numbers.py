"""``format_uncertain``: a few significant digits and the uncertainty in concise notation, read back within rounding."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from reports.numbers import MAX_DIGITS, format_number, format_uncertain


@pytest.mark.parametrize(
    "value,err,text",
    [
        (3.9712e-9, 5.3e-11, "3.97(5)e-9"),
        (0.9731234, 0.0123, "0.973(12)"),
        (42.0, 0.5, "42.0(5)"),
        (123.4, 12.0, "123(12)"),
        (-6.4712e-7, 1.04e-9, "-6.471(10)e-7"),
        (1234.0, 300.0, "1.23(30)e3"),
        (0.5, 0.009996, "0.500(10)"),  # 9.996e-3 rounds into the next decade: two digits of it
        (0.25, 0.0, "0.25"),
        (2.0, math.nan, "2"),
        (1.0, 1e-12, "1 ± 1e-12"),  # the concise form would need 13 digits
        (0.01, 0.5, "0.01 ± 0.5"),  # an uncertainty larger than the value
        (None, 1.0, "n/a"),
        (math.nan, 1.0, "n/a"),
        (math.inf, 1.0, "inf"),
    ],
)
def test_examples(value, err, text):
    assert format_uncertain(value, err) == text


def _read(text: str) -> tuple[float, float, float]:
    """``(value, uncertainty, unit of the last digit)`` of a concise string."""
    whole, decimals, err_digits, exponent = re.fullmatch(r"(-?\d+)(?:\.(\d+))?\((\d+)\)(?:e(-?\d+))?", text).groups()
    unit = 10.0 ** (int(exponent or 0) - len(decimals or ""))
    return float(f"{whole}.{decimals or 0}") * 10.0 ** int(exponent or 0), int(err_digits) * unit, unit


def test_concise_strings_read_back_within_half_a_unit_and_keep_one_or_two_digits():
    rng = np.random.default_rng(7)
    for _ in range(2000):
        value = float(rng.choice([-1, 1]) * 10.0 ** rng.uniform(-12, 8))
        err = float(abs(value) * 10.0 ** rng.uniform(-5, -0.01))
        text = format_uncertain(value, err)
        if "±" in text:
            continue
        shown, shown_err, unit = _read(text)
        assert abs(shown - value) <= 0.5 * unit * (1 + 1e-9), (value, err, text)
        assert abs(shown_err - err) <= 0.5 * unit * (1 + 1e-9), (value, err, text)
        assert 1 <= len(re.search(r"\((\d+)\)", text).group(1)) <= 2 and shown_err >= unit, text
        assert len(re.sub(r"\D", "", text.split("(")[0]).lstrip("0")) <= MAX_DIGITS, text


def test_plain_numbers_have_four_significant_digits():
    assert format_number(0.97312345) == "0.9731" and format_number(-1.5e-7) == "-1.5e-07"
    assert format_number(None) == "n/a" and format_number(math.nan) == "n/a" and format_number(3) == "3"
    assert format_number("strict_saddle") == "strict_saddle" and format_number(True) == "True"
