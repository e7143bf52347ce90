"""Report sections for a ``landscape verify`` output: the claims table and one section per claim.

Under ``OUT/<claim-id>/`` each claim's evidence is searched for run directories
(``trajectory.csv``), analysis folders (``analysis.json``) and the special files
``rates/escape.json``, ``rates/decay.json`` and ``benign-landscape/critical_points.json``;
each is drawn when present and skipped silently when absent. Evidence that cannot be read
becomes a note in the claim's section, never a failed report.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import fig_points, fig_rates
from .document import Section, Table, exact
from .inputs import Claim, read_json
from .plotting import render_figure
from .sections_run import analysis_section, run_section

__all__ = ["MAX_RUNS", "claim_sections", "claims_table"]

#: at most this many run directories and this many analysis folders are drawn per claim.
MAX_RUNS = 3


def slugify(text: str) -> str:
    """A file-name-safe, lower-case form of ``text``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _margin(claim: Claim) -> str:
    """The metric called ``margin`` (or ending in ``_margin``), written exactly; ``-`` when there is none."""
    for name, metric in claim.metrics.items():
        if name == "margin" or name.endswith("_margin"):
            return exact(metric.value) + ("" if not metric.uncertainty else f" ± {exact(metric.uncertainty)}")
    return "-"


def claims_table(claims: list[Claim]) -> Table:
    """One row per claim: id, verdict, key (first) metric, its uncertainty, margin (thresholds are in each claim's section)."""
    rows = []
    for claim in claims:
        name, metric = next(iter(claim.metrics.items()), ("-", None))
        value = "-" if metric is None else f"{name} = {exact(metric.value)}"
        sigma = "-" if metric is None or metric.uncertainty is None else exact(metric.uncertainty)
        rows.append([claim.id, claim.verdict, value, sigma, _margin(claim)])
    return Table(["claim", "verdict", "key metric", "±", "margin"], rows, caption="Claims", css="claims", verdict_column=1)


def claim_sections(claims: list[Claim], root: Path) -> list[Section]:
    """One section per claim with its statement, metrics, table, evidence and figures."""
    slugs: list[str] = []
    for claim in claims:
        base = f"claim-{slugify(claim.id)}"
        slugs.append(base if base not in slugs else f"{base}-{len(slugs)}")  # ids that slugify alike
    return [_claim_section(claim, root, slug) for claim, slug in zip(claims, slugs, strict=True)]


def _claim_section(claim: Claim, root: Path, slug: str) -> Section:
    section = Section(f"{claim.id}: {claim.verdict}", anchor=slug)
    if claim.statement:
        section.paragraphs.append(claim.statement)
    section.paragraphs.append(f"Threshold: {claim.threshold}")
    section.tables.append(Table(
        ["metric", "value", "uncertainty", "description"],
        [[name, exact(m.value), exact(m.uncertainty), m.description] for name, m in claim.metrics.items()],
        caption="Metrics",
    ))
    if claim.table:
        columns = list(dict.fromkeys(key for row in claim.table for key in row))
        section.tables.append(Table([str(c) for c in columns], [[exact(row.get(c, "")) for c in columns] for row in claim.table],
                                    caption="Table"))
    if claim.evidence:
        section.paragraphs.append("Evidence: " + ", ".join(claim.evidence))
    folder = root / claim.id
    if folder.is_dir() and folder.resolve().is_relative_to(root.resolve()):
        _special_figures(claim.id, folder, slug, section)
        _evidence_sections(folder, root, slug, section)
    return section


def _special_figures(claim_id: str, folder: Path, slug: str, section: Section) -> None:
    escape, decay, points = folder / "escape.json", folder / "decay.json", folder / "critical_points.json"
    if claim_id == "rates" and escape.is_file():
        _guarded(section, escape, lambda: section.figures.append(render_figure(
            fig_rates.escape_figure(*fig_rates.escape_data(read_json(escape))), f"{slug}-escape",
            "Escape time from a strict saddle against log(1/r): measurements, the fitted line, and the theory slope 1/|λ_min|.",
        )))
    if claim_id == "rates" and decay.is_file():
        _guarded(section, decay, lambda: section.figures.append(render_figure(
            fig_rates.decay_figure(*fig_rates.decay_data(read_json(decay))), f"{slug}-decay",
            "L − L* near a global minimum on a log scale, with the fitted rate and the predicted rate 2λ⁺_min.",
        )))
    if claim_id == "benign-landscape" and points.is_file():
        _guarded(section, points, lambda: _critical_point_figures(read_json(points), slug, section))


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


def _evidence_sections(folder: Path, root: Path, slug: str, section: Section) -> None:
    """Figures of the run directories and analysis folders under ``folder`` (at most :data:`MAX_RUNS` each)."""
    for marker, build, what in (("trajectory.csv", run_section, "run"), ("analysis.json", analysis_section, "analysis")):
        found = sorted(p.parent for p in folder.rglob(marker) if p.is_file())
        for i, path in enumerate(found[:MAX_RUNS]):
            rel = path.relative_to(root).as_posix()

            def add(path: Path = path, rel: str = rel, i: int = i, build=build, what: str = what) -> None:
                sub = build(path, f"{slug}-{what}{i}-{slugify(path.name)}", f"{what}: {rel}")
                section.tables += sub.tables[:1]
                section.tables[-1].caption = f"{what}: {rel}"
                section.figures += sub.figures
                section.notes += sub.notes

            _guarded(section, path / marker, add)
        if len(found) > MAX_RUNS:
            where = folder.relative_to(root).as_posix()
            section.paragraphs.append(f"{len(found) - MAX_RUNS} more {what} folder(s) under {where}/ not drawn.")


def _guarded(section: Section, path: Path, action) -> None:
    """Run ``action``; a malformed evidence file becomes a note instead of an error."""
    try:
        action()
    except (ValueError, KeyError, TypeError, OSError) as err:
        section.notes.append(f"could not draw {path.name} ({path.parent.name}): {' '.join(str(err).split())}")
