"""Report sections for a ``landscape verify`` output: the claims table and one section per claim.

Under ``OUT/<claim-id>/`` each claim's evidence is searched for run directories
(``trajectory.csv``), analysis folders (``analysis.json``) and the special files
``rates/escape.json``, ``rates/decay.json`` and ``benign-landscape/critical_points.json``;
each is drawn when present and skipped silently when absent. Evidence that cannot be read
becomes a note in the claim's section, never a failed report.

A claim's section shows one summary figure (its first claim-level figure, else its first
run's first figure); the other figures and each run's material sit in collapsed details, each
figure titled with the run it shows, so that a claim fits a screen or two.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from verification.records import ClaimResult, Metric

from . import fig_joint, fig_points, fig_rates
from .document import Banner, Section, Table
from .inputs import VerifyOutput, read_json
from .numbers import format_number, format_uncertain
from .plotting import render_figure
from .sections_run import analysis_section, run_section

__all__ = ["MAX_RUNS", "MAX_TABLE_ROWS", "claim_sections", "claims_table", "provenance_section", "verify_banner"]

#: at most this many run directories and this many analysis folders are drawn per claim.
MAX_RUNS = 3
#: a claim's table with more rows than this is shown collapsed.
MAX_TABLE_ROWS = 8


def slugify(text: str) -> str:
    """A file-name-safe, lower-case form of ``text``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _value(metric: Metric) -> str:
    """A metric's value and uncertainty in concise notation; ``n/a`` where it is not applicable or undefined."""
    return format_uncertain(metric.value, metric.uncertainty) if metric.applicable else "n/a"


def claims_table(claims: list[ClaimResult]) -> Table:
    """One row per claim: id, verdict, key (first) metric, wall time (thresholds are in each claim's section)."""
    rows = []
    for claim in claims:
        name, metric = next(iter(claim.metrics.items()), ("-", None))
        value = "-" if metric is None else f"{name} = {_value(metric)}"
        seconds = f"{claim.seconds:.1f} s" if math.isfinite(claim.seconds) else "-"
        rows.append([claim.id, claim.verdict, value, seconds])
    return Table(["claim", "verdict", "key metric", "time"], rows, caption="Claims", css="claims", verdict_column=1)


def verify_banner(output: VerifyOutput) -> Banner:
    """The status a verify report opens with: failed claims with their reasons, and every regression as a table."""
    lines = []
    for claim in output.claims:
        if claim.verdict == "fail":
            reasons = "; ".join(claim.failures) if claim.failures else f"threshold not met ({claim.threshold})"
            lines.append(f"{claim.id} failed: {reasons}")
        elif claim.verdict == "inconclusive":
            lines.append(f"{claim.id} inconclusive: the evidence neither clears nor contradicts its threshold")
    if output.compared and output.provenance.get("baseline"):
        lines.append(f"compared with the baseline {output.provenance['baseline']}")
    table = None
    if output.regressions:
        rows = []
        for change in output.regressions:
            old, new = _pair(change.get("old"), change.get("new"))
            rows.append([str(change.get("claim")), str(change.get("metric")), old, new,
                         _tolerance(change.get("tolerance")), str(change.get("note", ""))])
        table = Table(["claim", "metric", "old", "new", "tolerance", "note"], rows,
                      caption=f"Regressions against the baseline ({len(rows)})")
    return Banner(output.status == "pass", output.headline, lines, table)


def _pair(old: Any, new: Any) -> tuple[str, str]:
    """Two numbers with as many significant digits (4 at least) as it takes to tell them apart."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new)):
        return format_number(old), format_number(new)
    for digits in range(4, 18):
        if f"{old:.{digits}g}" != f"{new:.{digits}g}":
            break
    return f"{old:.{digits}g}", f"{new:.{digits}g}"


def _tolerance(tol: Any) -> str:
    """A metric's tolerance in words (``-`` for a verdict change)."""
    if not isinstance(tol, dict):
        return "-"
    return ", ".join(f"{key} {format_number(value) if isinstance(value, float) else value}" for key, value in tol.items())


def provenance_section(provenance: dict[str, Any]) -> Section:
    """What ran, where and how long: a two-column table (a schema-1 results.json has none: a paragraph says so)."""
    section = Section("Provenance", anchor="provenance")
    if not provenance:
        section.paragraphs.append("results.json records no provenance (written by an older landscape verify).")
        return section
    rows = []
    for key, value in provenance.items():
        if key == "blas" and isinstance(value, list):
            value = "; ".join(f"{b.get('internal_api')} {b.get('version')}: {b.get('num_threads')} threads"
                              for b in value if isinstance(b, dict)) or "not recorded"
        elif key == "seconds" and isinstance(value, dict):
            value = f"{format_number(value.get('total'))} s in all (per claim: see the claims table)"
        rows.append([key.replace("_", " "), "n/a" if value is None else str(value)])
    section.tables.append(Table(["", "value"], rows, caption="Provenance"))
    return section


def claim_sections(claims: list[ClaimResult], root: Path) -> list[Section]:
    """One section per claim with its statement, metrics, table, evidence and figures."""
    slugs: list[str] = []
    for claim in claims:
        base = f"claim-{slugify(claim.id)}"
        slugs.append(base if base not in slugs else f"{base}-{len(slugs)}")  # ids that slugify alike
    return [_claim_section(claim, root, slug) for claim, slug in zip(claims, slugs, strict=True)]


def _claim_section(claim: ClaimResult, root: Path, slug: str) -> Section:
    """Statement, threshold, failures, metrics, a short table and one summary figure in the page; the rest in details."""
    section = Section(f"{claim.id}: {claim.verdict}", anchor=slug)
    if claim.statement:
        section.paragraphs.append(claim.statement)
    section.paragraphs.append(f"Threshold: {claim.threshold}")
    section.notes += [f"Failed: {failure}" for failure in claim.failures]
    section.tables.append(Table(
        ["metric", "value", "description"],
        [[name, _value(m), m.description] for name, m in claim.metrics.items()],
        caption="Metrics",
        css="metrics",
    ))
    if claim.table:
        columns = list(dict.fromkeys(key for row in claim.table for key in row))
        table = Table([str(c) for c in columns], [[format_number(row.get(c, "")) for c in columns] for row in claim.table],
                      caption="Table", css="wide")
        if len(claim.table) <= MAX_TABLE_ROWS:
            section.tables.append(table)
        else:
            section.details.append(Section(f"Table ({len(claim.table)} rows)", tables=[table]))
    if claim.evidence:
        section.paragraphs.append("Evidence: " + ", ".join(claim.evidence))
    folder = root / claim.id
    if folder.is_dir() and folder.resolve().is_relative_to(root.resolve()):
        figures = Section("figures")
        _special_figures(claim.id, folder, slug, figures)
        section.notes += figures.notes
        runs = _evidence_sections(folder, root, slug, section)
        if figures.figures:
            section.figures.append(figures.figures[0])
            if figures.figures[1:]:
                section.details.insert(0, Section(f"More figures ({len(figures.figures) - 1})", figures=figures.figures[1:]))
        elif runs and runs[0].figures:
            section.figures.append(runs[0].figures.pop(0))
        section.details += runs
    return section


def _special_figures(claim_id: str, folder: Path, slug: str, section: Section) -> None:
    escape, decay, points = folder / "escape.json", folder / "decay.json", folder / "critical_points.json"
    if claim_id == "rates" and escape.is_file():
        _guarded(section, escape, lambda: section.figures.append(render_figure(
            fig_rates.escape_figure(*fig_rates.escape_data(read_json(escape))), f"{slug}-escape",
            "Escape time from a strict saddle against log(1/r): measurements, the fitted line, and the theory slope 1/|λ_min|.",
            title=f"{claim_id}: {claim_id}/escape.json",
        )))
    if claim_id == "rates" and decay.is_file():
        _guarded(section, decay, lambda: section.figures.append(render_figure(
            fig_rates.decay_figure(*fig_rates.decay_data(read_json(decay))), f"{slug}-decay",
            "L − L* near a global minimum on a log scale, with the fitted rate and the predicted rate 2λ⁺_min.",
            title=f"{claim_id}: {claim_id}/decay.json",
        )))
    if claim_id == "benign-landscape" and points.is_file():
        _guarded(section, points, lambda: _critical_point_figures(read_json(points), slug, section))
    if claim_id == "joint-training":
        for name, curves, title, caption in JOINT_FIGURES:
            path = folder / name
            if path.is_file():
                figure = f"{slug}-{path.stem.split('_')[0]}"
                _guarded(section, path, lambda: section.figures.append(render_figure(  # called within this iteration
                    fig_joint.curves_figure(curves(read_json(path)), title), figure, caption,
                    title=f"{claim_id}: {claim_id}/{path.name}",
                )))


#: the joint-training figures: (evidence file, its curves, figure title, caption); the figure is named after the file's
#: first word (``paper``, ``trajectories``).
JOINT_FIGURES = (
    ("paper_comparison.json", fig_joint.paper_curves, "The paper's sizes: joint SGD beside the flow",
     "L_N along the landscape flow (exact and sampled), the SGD run whose W realises Γ*(µ) after every step, and the "
     "jointly trained model at each attention rate, from the whitened paper start."),
    ("trajectories.json", fig_joint.small_curves, "Small sizes: joint SGD beside the flow",
     "L_N along the landscape flow (exact and sampled) and the jointly trained model at each setting (first seed), with "
     "the frozen-W control."),
)


def _critical_point_figures(raw: Any, slug: str, section: Section) -> None:
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise ValueError("must hold a list of objects")
    spectra = [
        fig_points.SpectrumRow(str(p.get("name", i)), _class(p), _spectrum(p),
                               _floats(p.get("null_spectrum")), p.get("null_dim"))
        for i, p in enumerate(raw)
    ]
    spectra = [row for row in spectra if row.spectrum or row.null_spectrum]
    if spectra:
        section.figures.append(render_figure(
            fig_points.spectra_figure(spectra), f"{slug}-spectra",
            "Hessian spectra at the critical points found (λ_min alone where no spectrum was recorded; orange: "
            "negative eigenvalues; grey crosses: null directions, shown apart, or their deflated count).",
            title="benign-landscape: critical_points.json",
        ))
    curvature = [
        fig_points.CurvatureRow(str(p.get("name", i)), float(p["curvature_ratio"]),
                                float(p["bound"]) if isinstance(p.get("bound"), (int, float)) else None)
        for i, p in enumerate(raw) if isinstance(p.get("curvature_ratio"), (int, float))
    ]
    if curvature:
        section.figures.append(render_figure(
            fig_points.curvature_figure(curvature), f"{slug}-curvature",
            "Flat curvature ratio (d²L/ds²)/L² at each non-global critical point beside −4/(k R₁²) (black bars); "
            "orange dots contradict the bound.",
            title="benign-landscape: critical_points.json",
        ))


def _class(point: dict[str, Any]) -> str:
    """The classification, marked when the point lies outside the judged region (``in_region`` false)."""
    text = str(point.get("classification", "?"))
    return f"{text}, not judged" if point.get("in_region") is False else text


def _spectrum(point: dict[str, Any]) -> list[float]:
    """The point's ``spectrum``, or ``[lambda_min]`` where only that was recorded."""
    if point.get("spectrum") is None and isinstance(point.get("lambda_min"), (int, float)):
        return [float(point["lambda_min"])]
    return _floats(point.get("spectrum"))


def _floats(value: Any) -> list[float]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError("spectrum and null_spectrum must be lists of numbers")
    return [float(v) for v in value]


def _evidence_sections(folder: Path, root: Path, slug: str, section: Section) -> list[Section]:
    """One sub-section per run directory and analysis folder under ``folder`` (at most :data:`MAX_RUNS` of each kind).

    Each holds the run's first table and its figures, titled with the run's path; notes about
    unreadable evidence go to ``section``.
    """
    subs = []
    for marker, build, what in (("trajectory.csv", run_section, "run"), ("analysis.json", analysis_section, "analysis")):
        found = sorted(p.parent for p in folder.rglob(marker) if p.is_file())
        for i, path in enumerate(found[:MAX_RUNS]):
            rel = path.relative_to(root).as_posix()

            def add(path: Path = path, rel: str = rel, i: int = i, build=build, what: str = what) -> None:
                sub = build(path, f"{slug}-{what}{i}-{slugify(path.name)}", f"{what}: {rel}")
                sub.tables = sub.tables[:1]
                if sub.tables:
                    sub.tables[0].caption = f"{what}: {rel}"
                section.notes += sub.notes
                sub.notes = []
                subs.append(sub)

            _guarded(section, path / marker, add)
        if len(found) > MAX_RUNS:
            where = folder.relative_to(root).as_posix()
            section.paragraphs.append(f"{len(found) - MAX_RUNS} more {what} folder(s) under {where}/ not drawn.")
    return subs


def _guarded(section: Section, path: Path, action) -> None:
    """Run ``action``; a malformed evidence file becomes a note instead of an error."""
    try:
        action()
    except (ValueError, KeyError, TypeError, OSError) as err:
        section.notes.append(f"could not draw {path.name} ({path.parent.name}): {' '.join(str(err).split())}")
