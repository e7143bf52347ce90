"""``build_report``: figures, ``index.html`` and ``summary.md`` for a verify, train or analyze output.

Example::

    from pathlib import Path
    from reports.build import build_report
    build_report(Path("verify-results"), Path("verify-results"))   # what ``landscape verify`` does
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from landscape.io.files import atomic_write_text

from .document import Report, Section
from .html import render_html
from .inputs import detect_kind, read_verify
from .markdown import render_markdown
from .plotting import write_figures
from .sections_run import analysis_section, run_section
from .sections_verify import claim_sections, claims_table, provenance_section, verify_banner

__all__ = ["build_report"]


def build_report(
    input_dir: Path, out_dir: Path, *, measure: Path | None = None, problem: Path | None = None, source: Path | None = None
) -> Path:
    """Write ``out_dir/index.html``, ``out_dir/summary.md`` and ``out_dir/figures/`` for ``input_dir``.

    ``input_dir`` is a ``landscape verify`` output (``results.json``), a ``landscape train``
    run directory (``trajectory.csv``) or a ``landscape analyze`` output (``analysis.json``);
    ``out_dir`` may be the same folder. ``measure`` and ``problem`` (an analyze output only)
    name the measure analysed and its problem file, to draw ψ0 on the particles. ``source`` is
    the folder the report names as its input (default ``input_dir``): ``landscape verify``
    reads its output from the staging folder that becomes ``source``
    (:func:`landscape.io.files.staged_output`).

    Returns:
        the path of ``index.html``.

    Raises:
        ValueError: ``input_dir`` is none of the three kinds, or one of its files is malformed;
            everything is read and rendered before the first file is written, so nothing is.
    """
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    kind = detect_kind(input_dir)
    if kind != "analysis" and (measure is not None or problem is not None):
        raise ValueError(f"measure and problem apply to an analyze output only; {str(input_dir)!r} is a {kind} output.")
    source = str((input_dir if source is None else Path(source)).resolve())
    if kind == "verify":
        output = read_verify(input_dir / "results.json")
        counts = Counter(c.verdict for c in output.claims)
        overview = Section(
            "Claims",
            paragraphs=[", ".join(f"{counts[v]} {v}" for v in ("pass", "fail", "inconclusive")) + f" of {len(output.claims)} claims."],
            tables=[claims_table(output.claims)],
            anchor="claims",
        )
        sections = [overview, provenance_section(output.provenance), *claim_sections(output.claims, input_dir)]
        report = Report("Verification report", kind, source, sections, banner=verify_banner(output))
    elif kind == "run":
        sections = [run_section(input_dir, "run", f"Training run: {input_dir.name}")]
        if (input_dir / "analysis.json").is_file():
            sections.append(analysis_section(input_dir, "analysis", f"Analysis: {input_dir.name}"))
        report = Report("Training run report", kind, source, sections)
    else:
        section = analysis_section(input_dir, "analysis", f"Analysis: {input_dir.name}", measure, problem)
        report = Report("Critical point report", kind, source, [section])
    write_figures([fig for section in report.sections for fig in section.all_figures()], out_dir)
    atomic_write_text(out_dir / "summary.md", render_markdown(report))
    index = out_dir / "index.html"
    atomic_write_text(index, render_html(report))
    return index
