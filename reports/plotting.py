"""Shared figure plumbing: a pyplot-free figure factory and rendering to SVG + PNG bytes.

Figures are made with :class:`matplotlib.figure.Figure` directly (no pyplot state, no
backend switching), so building a report never opens a window. Figures are rendered to
bytes first and written only once the whole report is built (:func:`write_figures`), so a
bad input leaves nothing behind.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from landscape.io.files import atomic_write_bytes

__all__ = ["COLORS", "FigureFile", "literal", "new_figure", "render_figure", "write_figures"]

#: one colour per role, used consistently across figures (colour-blind-safe Okabe–Ito).
COLORS = {
    "main": "#0072B2",
    "plateau": "#E69F00",
    "final": "#009E73",
    "kick": "#D55E00",
    "birth": "#009E73",
    "death": "#CC79A7",
    "theory": "#000000",
    "fit": "#56B4E9",
    "bad": "#D55E00",
    "null": "#999999",
}

_SVG_META = {"Date": None, "Creator": None}
_PNG_META = {"Software": None}


@dataclass(frozen=True)
class FigureFile:
    """A rendered figure.

    Attributes:
        png, svg: the files' paths relative to the report folder (POSIX form).
        caption: what the figure shows, in words.
        png_bytes, svg_bytes: the rendered files.
    """

    png: str
    svg: str
    caption: str
    png_bytes: bytes
    svg_bytes: bytes


def literal(text: str) -> str:
    """User text for a matplotlib label: ``$`` escaped, so it is never parsed as mathtext."""
    return str(text).replace("$", r"\$")


def new_figure(width: float = 6.4, height: float = 3.6) -> Figure:
    """A figure of ``width × height`` inches with a constrained layout."""
    return Figure(figsize=(width, height), layout="constrained")


def render_figure(fig: Figure, name: str, caption: str, folder: str = "figures", title: str | None = None) -> FigureFile:
    """Render ``fig`` to PNG and SVG bytes (reproducibly: no dates, fixed SVG ids) for ``folder/name.*``.

    ``title`` (e.g. the run a figure shows) becomes the figure's super-title.
    """
    if title:
        fig.suptitle(literal(title), fontsize="small", color="#444")
    files = {}
    for fmt, meta in (("svg", _SVG_META), ("png", _PNG_META)):
        buffer = io.BytesIO()
        with matplotlib.rc_context({"svg.hashsalt": name}):
            fig.savefig(buffer, format=fmt, dpi=110, metadata=meta)
        files[fmt] = buffer.getvalue()
        fig.set_layout_engine("none")  # the layout of the first rendering stands for the second
    return FigureFile(f"{folder}/{name}.png", f"{folder}/{name}.svg", caption, files["png"], files["svg"])


def write_figures(figures: list[FigureFile], out_dir: Path) -> None:
    """Write every figure's PNG and SVG under ``out_dir``, atomically."""
    for fig in figures:
        atomic_write_bytes(out_dir / fig.png, fig.png_bytes)
        atomic_write_bytes(out_dir / fig.svg, fig.svg_bytes)
