"""The report as plain data: sections of paragraphs, tables, figures and notes.

:mod:`reports.html` and :mod:`reports.markdown` render the same :class:`Report`, so the two
hold the same numbers. Every string here is raw user text; the renderers escape it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .plotting import FigureFile

__all__ = ["Banner", "Report", "Section", "Table"]


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
    """A titled part of the report; ``notes`` are warnings shown apart from the text.

    ``details`` are sub-sections shown collapsed in HTML (``<details>``; e.g. one per run
    behind a claim) and as sub-headings in Markdown.
    """

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    anchor: str = ""
    details: list["Section"] = field(default_factory=list)

    def all_figures(self) -> list[FigureFile]:
        """This section's figures and those of its details, in page order."""
        return [*self.figures, *(fig for sub in self.details for fig in sub.all_figures())]


@dataclass
class Banner:
    """The answer a report leads with: ``ok`` (pass) or not, a headline, and lines or a table below it."""

    ok: bool
    headline: str
    lines: list[str] = field(default_factory=list)
    table: Table | None = None


@dataclass
class Report:
    """A whole report: what it was built from, the banner it opens with (if any) and its sections."""

    title: str
    kind: str
    source: str
    sections: list[Section]
    banner: Banner | None = None
