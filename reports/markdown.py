"""Render a :class:`~reports.document.Report` as Markdown (``summary.md``).

It holds the same tables as the HTML page (numbers written exactly, so they parse back to
the values of ``results.json``); figures are linked as the PNG files beside it. Markdown
punctuation in user text is backslash-escaped, so a name cannot inject links or HTML.
"""

from __future__ import annotations

import re

from .document import Report, Section, Table

__all__ = ["md_escape", "render_markdown"]

_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def md_escape(text: str) -> str:
    """``text`` on one line with Markdown/HTML punctuation backslash-escaped."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _table(table: Table) -> list[str]:
    lines = [f"**{md_escape(table.caption)}**", ""] if table.caption else []
    lines.append("| " + " | ".join(md_escape(c) for c in table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in table.rows]
    return [*lines, ""]


def _section(section: Section, level: int) -> list[str]:
    lines = [f"{'#' * level} {md_escape(section.title)}", ""]
    for paragraph in section.paragraphs:
        lines += [md_escape(paragraph), ""]
    for note in section.notes:
        lines += [f"> **Note:** {md_escape(note)}", ""]
    for table in section.tables:
        lines += _table(table)
    for fig in section.figures:
        lines += [f"![{md_escape(fig.caption)}]({fig.png}) ([SVG]({fig.svg}))", ""]
    for sub in section.details:
        lines += _section(sub, level + 1)
    return lines


def render_markdown(report: Report) -> str:
    """The whole summary as a string: title, banner (status first), then the sections."""
    lines = [f"# {md_escape(report.title)}", ""]
    if report.banner is not None:
        lines += [f"**{md_escape(report.banner.headline)}**", ""]
        lines += [f"- {md_escape(line)}" for line in report.banner.lines]
        lines += [""] if report.banner.lines else []
        lines += _table(report.banner.table) if report.banner.table is not None else []
    lines += [f"{md_escape(report.kind)} input: `{report.source.replace('`', '')}`", ""]
    for section in report.sections:
        lines += _section(section, 2)
    return "\n".join(lines)
