"""Render a :class:`~reports.document.Report` as one self-contained HTML page.

Images are embedded as base64 PNG data URIs (each linked to its SVG beside the page), the
style is inline, and a Content-Security-Policy forbids every network fetch. The layout is a
single column that fits a phone-width window; wide tables scroll sideways inside their box.
The page opens with the report's banner (its status and, for a verify output, every regression);
per-run material sits in collapsed ``<details>``. Every piece of text is passed through
:func:`html.escape`. A small script marks ``<body>``
with ``data-images-loaded="all"`` once every image has decoded (used by the browser test).
"""

from __future__ import annotations

import base64
from html import escape

from .document import Report, Section, Table
from .plotting import FigureFile

__all__ = ["render_html"]

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 60rem; padding: 0.75rem; font: 16px/1.45 system-ui, -apple-system, "Segoe UI",
  Roboto, sans-serif; color: #1b1b1b; background: #fff; overflow-wrap: anywhere; }
h1 { font-size: 1.45rem; margin: 0.4rem 0; } h2 { font-size: 1.2rem; margin: 1.6rem 0 0.5rem;
  border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
p.source { color: #555; font-size: 0.9rem; }
nav ul { display: flex; flex-wrap: wrap; gap: 0.15rem 0.9rem; list-style: none; padding: 0; margin: 0.3rem 0; font-size: 0.9rem; }
.scroll { overflow-x: auto; margin: 0.6rem 0; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; font-size: 0.85rem; min-width: 100%; }
caption { text-align: left; font-weight: 600; padding: 0.2rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.45rem; text-align: left; vertical-align: top;
  overflow-wrap: normal; max-width: 18rem; }
th { background: #f4f4f4; }
td[class^="verdict-"] { white-space: nowrap; }
.verdict-pass { background: #e3f4e8; color: #0b5d2a; font-weight: 600; }
.verdict-fail { background: #fde4e1; color: #9b1c10; font-weight: 600; }
.verdict-inconclusive { background: #fff4d6; color: #7a5300; font-weight: 600; }
figure { margin: 0.8rem 0; } figure img { display: block; width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #444; margin-top: 0.25rem; }
@media (max-width: 40rem) {
  table.stack thead { display: none; }
  table.stack, table.stack caption, table.stack tbody, table.stack tr { display: block; width: 100%; }
  table.stack tr { border: 1px solid #ddd; margin-bottom: 0.5rem; }
  table.stack td { display: block; border: none; border-bottom: 1px solid #f0f0f0; max-width: none; }
  table.stack td::before { content: attr(data-label) ": "; font-weight: 600; color: #555; }
}
.note { background: #fff4d6; border-left: 4px solid #e69f00; padding: 0.4rem 0.6rem; margin: 0.5rem 0; font-size: 0.9rem; }
.banner { border: 2px solid; border-radius: 4px; padding: 0.5rem 0.75rem; margin: 0.6rem 0; }
.banner-pass { background: #e3f4e8; border-color: #0b5d2a; } .banner-fail { background: #fde4e1; border-color: #9b1c10; }
.banner .headline { font-size: 1.15rem; font-weight: 700; margin: 0.2rem 0; }
.banner-pass .headline { color: #0b5d2a; } .banner-fail .headline { color: #9b1c10; }
.banner ul { margin: 0.3rem 0; padding-left: 1.1rem; } .banner table { background: #fff; }
details { border: 1px solid #ddd; border-radius: 4px; padding: 0.3rem 0.6rem; margin: 0.5rem 0; }
summary { cursor: pointer; font-weight: 600; }
"""

_SCRIPT = """
(function () {
  function check() {
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.every(function (im) { return im.complete && im.naturalWidth > 0; });
    document.body.setAttribute("data-image-count", String(imgs.length));
    document.body.setAttribute("data-images-loaded", ok ? "all" : "missing");
  }
  window.addEventListener("load", check);
})();
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _table(table: Table) -> str:
    """A table in a sideways-scrolling box; without its own class and with 3+ columns it becomes
    one card per row on a narrow screen (``stack``: each cell labelled with its column)."""
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    rows = []
    for row in table.rows:
        cells = []
        for j, (label, cell) in enumerate(zip(table.columns, row, strict=True)):
            css = f' class="verdict-{cell}"' if j == table.verdict_column and cell in ("pass", "fail", "inconclusive") else ""
            cells.append(f'<td{css} data-label="{escape(label)}">{escape(cell)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    css_name = table.css or ("stack" if len(table.columns) >= 3 else "")
    css = f' class="{escape(css_name)}"' if css_name else ""
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    return f'<div class="scroll"><table{css}>{caption}<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _figure(fig: FigureFile) -> str:
    data = base64.b64encode(fig.png_bytes).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(fig.caption)}">'
        f'<figcaption>{escape(fig.caption)} <a href="{escape(fig.svg)}">SVG</a></figcaption></figure>'
    )


def _body(section: Section) -> list[str]:
    """The section's content: paragraphs, notes, tables, figures, then its details collapsed."""
    parts = [f"<p>{escape(p)}</p>" for p in section.paragraphs]
    parts += [f'<div class="note">{escape(n)}</div>' for n in section.notes]
    parts += [_table(t) for t in section.tables]
    parts += [_figure(f) for f in section.figures]
    for sub in section.details:
        anchor = f' id="{escape(sub.anchor)}"' if sub.anchor else ""
        parts += [f"<details{anchor}><summary>{escape(sub.title)}</summary>", *_body(sub), "</details>"]
    return parts


def _section(section: Section) -> str:
    anchor = f' id="{escape(section.anchor)}"' if section.anchor else ""
    return "\n".join([f"<section{anchor}><h2>{escape(section.title)}</h2>", *_body(section), "</section>"])


def _banner(report: Report) -> str:
    """The status box the page opens with (empty when the report has none)."""
    banner = report.banner
    if banner is None:
        return ""
    css = "banner-pass" if banner.ok else "banner-fail"
    lines = "".join(f"<li>{escape(line)}</li>" for line in banner.lines)
    return "".join([
        f'<div class="banner {css}" id="status" role="status"><p class="headline">{escape(banner.headline)}</p>',
        f"<ul>{lines}</ul>" if lines else "",
        _table(banner.table) if banner.table is not None else "",
        "</div>",
    ])


def render_html(report: Report) -> str:
    """The whole page as a string (UTF-8, no external resources)."""
    toc = "".join(
        f'<li><a href="#{escape(s.anchor)}">{escape(s.title)}</a></li>' for s in report.sections if s.anchor
    )
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>{escape(report.title)}</title>",
        f"<style>{_CSS}</style>",
        f"<script>{_SCRIPT}</script>",
        "</head><body>",
        f"<h1>{escape(report.title)}</h1>",
        _banner(report),
        f'<p class="source">{escape(report.kind)} input: {escape(report.source)}</p>',
        f"<nav><ul>{toc}</ul></nav>" if toc else "",
        *(_section(s) for s in report.sections),
        "</body></html>",
        "",
    ])
