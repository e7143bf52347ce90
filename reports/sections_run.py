"""Report sections for one training run and for one critical-point analysis."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from landscape.dynamics import read_trajectory
from landscape.dynamics.train import read_run_config
from landscape.io.files import load_npz

from . import fig_points, fig_run
from .document import Section, Table
from .inputs import find_particles, find_teacher_directions, read_json
from .numbers import format_number
from .phases import PAPER_VARIATION, event_times, find_phases, find_plateaus
from .plotting import render_figure

__all__ = ["analysis_section", "reference_lines", "run_section"]


def reference_lines(run: Path) -> tuple[float | None, float | None]:
    """The noise floor ``½τ²`` (at ``N = ∞``, the floor of ``L_∞``) and the perturbation threshold ``g_thr``
    (when perturbations are on) from the run's ``config.toml``, validated as ``landscape train`` validates it.

    ``(None, None)`` when the file is missing or invalid: they only add reference lines to the figures.
    """
    try:
        spec, dynamics = read_run_config(run)
    except ValueError:
        return None, None
    floor = 0.5 * spec.noise**2 if math.isinf(spec.prompt_length) else None
    kick = dynamics.perturbation
    return floor, (kick.g_thr if kick.kind != "none" else None)


def run_section(run: Path, slug: str, title: str) -> Section:
    """A section for the run directory ``run``: summary, plateaus, phases and the three run figures.

    Raises:
        ValueError: a malformed ``trajectory.csv``.
    """
    traj = read_trajectory(run / "trajectory.csv")
    plateaus = find_plateaus(traj)
    phases = find_phases(traj, plateaus)
    section = Section(title, anchor=slug)
    last = {name: float(column[-1]) for name, column in traj.columns.items()}
    events = event_times(traj)
    summary = [
        ["rows recorded", str(len(traj))],
        ["final time", format_number(last["time"])],
        ["final loss", format_number(last["loss"])],
        ["final residual ‖∇δL/δµ‖", format_number(last["grad_norm"])],
    ]
    if "sigma_min" in last:
        summary.append(["final λ_min(Σ_µµ)", format_number(last["sigma_min"])])
    summary += [[f"{kind} events", str(len(times))] for kind, times in sorted(events.items())]
    status_file = run / "status.json"
    if status_file.is_file():
        status = read_json(status_file)
        if isinstance(status, dict):
            summary.insert(0, ["status", f"{status.get('status', '?')}: {status.get('message', '')}"])
    if phases:
        within = sum(p.variation <= PAPER_VARIATION for p in phases)
        summary.append([f"phases with λ_min(Σ_µµ) within {PAPER_VARIATION:.0%}", f"{within} of {len(phases)}"])
    section.tables.append(Table(["quantity", "value"], summary, caption="Run summary"))
    if plateaus:
        section.tables.append(
            Table(
                ["kind", "t start", "t end", "duration", "loss (median)"],
                [["settled" if p.final else "plateau", format_number(p.t_start), format_number(p.t_stop),
                  format_number(p.t_stop - p.t_start), format_number(p.loss, 6)] for p in plateaus],
                caption="Plateaus (on ln L): the loss falls at most half as fast as the fastest later drop, residual ≤ 10% "
                "of its peak, ≥ 3% of the run, then a fall of more than 10%; settled: the fitted ln L slope × run length "
                "≤ 0.1 in every window of 3% of the run until the end",
            )
        )
    if phases:
        section.tables.append(
            Table(
                ["phase", "t start", "t end", "λ_min(Σ_µµ) min", "max", "max/min", "variation", f"≤ {PAPER_VARIATION:.0%}"],
                [[str(i + 1), format_number(p.t_start), format_number(p.t_stop), format_number(p.sigma_lo), format_number(p.sigma_hi), format_number(p.ratio),
                  f"{p.variation:.1%}", "yes" if p.variation <= PAPER_VARIATION else "no"] for i, p in enumerate(phases)],
                caption="Conditioning within each phase (phases end at plateau boundaries and perturbations)",
            )
        )
    floor, g_thr = reference_lines(run)
    section.figures.append(render_figure(
        fig_run.loss_figure(traj, plateaus, floor), f"{slug}-loss",
        "Loss against time; plateaus shaded (orange: passed, green: settled), perturbations dashed, births/deaths as ticks"
        + ("; dotted: the noise floor ½τ²." if floor else "."),
        title=title,
    ))
    section.figures.append(render_figure(
        fig_run.residual_figure(traj, plateaus, g_thr), f"{slug}-residual",
        "Stationarity residual ‖∇δL/δµ‖ in L²(µ) on a log scale: it dips at saddles and decays at a minimum"
        + ("; dotted: the perturbation threshold g_thr." if g_thr is not None else "."),
        title=title,
    ))
    if phases:
        section.figures.append(render_figure(
            fig_run.sigma_figure(traj, phases), f"{slug}-sigma",
            "λ_min(Σ_µµ) with each phase's [min, max] band and its max/min ratio; "
            f"green bands vary by at most {PAPER_VARIATION:.0%} (the paper's observation), orange ones by more.",
            title=title,
        ))
    return section


def _scalars(raw: dict[str, Any], prefix: str = "") -> list[list[str]]:
    """Rows ``[key, value]`` for every number, string or boolean in ``raw``, nested dicts flattened with dots."""
    rows = []
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and prefix.count(".") < 1:
            rows += _scalars(value, f"{name}.")
        elif isinstance(value, (int, float, str, bool)) or value is None:
            rows.append([name, format_number(value)])
    return rows


def _numbers(value: Any) -> list[float]:
    """The finite numbers of a JSON list (anything else in ``analysis.json`` reads as none)."""
    if not isinstance(value, list):
        return []
    return [float(v) for v in value if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def analysis_section(
    folder: Path, slug: str, title: str, measure: Path | None = None, problem: Path | None = None
) -> Section:
    """A section for an ``analyze`` output: its numbers, warnings, spectrum, ψ0 and curvature figures.

    ``measure`` and ``problem`` name the measure analysed and its problem file (for ψ0 on the
    particles); by default they are looked for beside the analysis (:mod:`reports.inputs`).

    Raises:
        ValueError: a malformed ``analysis.json`` or ``psi0.npz``, or a given file that is missing.
    """
    raw = read_json(folder / "analysis.json")
    if not isinstance(raw, dict):
        raise ValueError(f"{str(folder / 'analysis.json')!r} must hold an object.")
    section = Section(title, anchor=slug)
    warnings = raw.get("warnings")
    section.notes += [str(w) for w in warnings] if isinstance(warnings, list) else []
    section.tables.append(Table(["quantity", "value"], _scalars(raw), caption="Analysis (analysis.json)"))
    hessian = raw.get("hessian") if isinstance(raw.get("hessian"), dict) else {}
    eigenvalues = _numbers(hessian.get("eigenvalues"))
    name = str(raw.get("name", folder.name))
    if eigenvalues:
        null_dim = hessian.get("null_dim")
        row = fig_points.SpectrumRow(name, str(raw.get("classification", "?")), eigenvalues,
                                     _numbers(hessian.get("null_spectrum")),
                                     null_dim if isinstance(null_dim, int) and not isinstance(null_dim, bool) else None)
        section.figures.append(render_figure(
            fig_points.spectra_figure([row]), f"{slug}-spectrum",
            "Smallest Hessian eigenvalues off the null directions (orange: negative, a descent direction); "
            "the deflated null directions are counted apart.",
            title=title,
        ))
    density = raw.get("spectral_density")
    if isinstance(density, dict) and _numbers(density.get("nodes")):
        errors = density.get("error")
        error = _numbers([errors.get("w1_estimate")]) if isinstance(errors, dict) else []
        section.figures.append(render_figure(  # nodes and weights of different lengths: ValueError
            fig_points.density_figure(_numbers(density.get("nodes")), _numbers(density.get("weights")), eigenvalues,
                                      error[0] if error else None),
            f"{slug}-density",
            f"The whole Hessian spectrum by stochastic Lanczos quadrature ({density.get('probes')} probes × {density.get('steps')} "
            "steps; null directions included, as mass at 0), beside the smallest eigenvalues computed directly (ticks).",
            title=title,
        ))
    psi_file = folder / "psi0.npz"
    particles = find_particles(folder, raw, measure) if psi_file.is_file() else None
    u = find_teacher_directions(folder, raw, problem) if particles is not None else None
    if psi_file.is_file() and (particles is None or u is None):
        section.notes.append("psi0.npz found but not drawn: the measure or the problem file was not found "
                             "(pass --measure and --problem to landscape report).")
    if particles is not None and u is not None:
        psi = load_npz(psi_file, required=("a", "w"), what="psi0")
        lam = hessian.get("lambda_min")
        section.figures.append(render_figure(
            fig_points.psi0_figure(particles["w"], psi["w"], u, float(lam) if isinstance(lam, (int, float)) else None), f"{slug}-psi0",
            "ψ0 drawn on the particles: each particle's w projected on the teacher directions (dots), teacher neurons "
            "(stars), and ψ0's w part as arrows (the direction the eigenfunction moves each particle).",
            title=title,
        ))
    curvature = raw.get("curvature")
    if isinstance(curvature, dict) and isinstance(curvature.get("ratio"), (int, float)) and math.isfinite(curvature["ratio"]):
        bound = curvature.get("bound_constant")
        row = fig_points.CurvatureRow(name, float(curvature["ratio"]), float(bound) if isinstance(bound, (int, float)) else None)
        section.figures.append(render_figure(
            fig_points.curvature_figure([row]), f"{slug}-curvature",
            "Flat curvature ratio (d²L/ds²)/L(µ)² beside −4/(k R₁²): the bound holds when the dot lies below the bar.",
            title=title,
        ))
    return section
