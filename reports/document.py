"""The report as plain data: sections of paragraphs, tables, figures and notes.

:mod:`reports.html` and :mod:`reports.markdown` render the same :class:`Report`, so the two
hold the same numbers. Every string here is raw user text; the renderers escape it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .plotting import FigureFile

__all__ = ["Report", "Section", "Table", "exact", "short"]


@dataclass
class Table:
    """A table of strings.

    Attributes:
        columns: header cells; rows: one list of cells per row (as many as ``columns``).
        css: an HTML class (``claims`` for the claims table); verdict_column: the index of a
            column whose cells are verdicts (coloured in HTML), or None.
    """

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    css: str = ""
    verdict_column: int | None = None


@dataclass
class Section:
    """A titled part of the report; ``notes`` are warnings shown apart from the text."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    anchor: str = ""


@dataclass
class Report:
    """A whole report: what it was built from and its sections."""

    title: str
    kind: str
    source: str
    sections: list[Section]


def exact(value: Any) -> str:
    """A number written so that it parses back to the same float (``repr``); ``n/a`` for None/NaN."""
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else repr(value)
    return str(value)


def short(value: Any, digits: int = 4) -> str:
    """A number to ``digits`` significant figures for derived quantities; other values as text."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)
