"""Figures of one training run: loss with plateaus and events, residual, ``λ_min(Σ_µµ)`` by phase."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.dynamics import Trajectory

from .phases import PAPER_VARIATION, Phase, Plateau, event_times
from .plotting import COLORS, new_figure

__all__ = ["loss_figure", "residual_figure", "sigma_figure"]


def _mark_events(ax: Axes, traj: Trajectory) -> None:
    """Perturbations as dashed vertical lines; births and deaths as ticks along the bottom."""
    events = event_times(traj)
    for i, time in enumerate(events.get("kick", [])):
        ax.axvline(time, color=COLORS["kick"], ls="--", lw=0.9, label="perturbation" if i == 0 else None)
    for kind in ("birth", "death"):
        times = events.get(kind, [])
        if times:
            ax.plot(times, np.zeros(len(times)), "|", ms=9, color=COLORS[kind], transform=ax.get_xaxis_transform(),
                    clip_on=False, label=f"{kind}s ({len(times)} steps)")


def _shade_plateaus(ax: Axes, plateaus: list[Plateau]) -> None:
    first = {False: True, True: True}
    for p in plateaus:
        label = ("settled" if p.final else "plateau") if first[p.final] else None
        first[p.final] = False
        ax.axvspan(p.t_start, p.t_stop, color=COLORS["final" if p.final else "plateau"], alpha=0.18, lw=0, label=label)


def loss_figure(traj: Trajectory, plateaus: list[Plateau], loss_floor: float | None) -> Figure:
    """``L(µ_t)`` against ``t`` with plateaus shaded, events marked and the noise floor ``½τ²`` if given.

    The y axis is logarithmic when the loss spans more than a factor 30.
    """
    fig = new_figure()
    ax = fig.add_subplot()
    t, loss = traj["time"], traj["loss"]
    ax.plot(t, loss, color=COLORS["main"], lw=1.4, label="loss L(µ_t)")
    if "energy" in traj and not np.allclose(traj["energy"], loss, equal_nan=True):
        ax.plot(t, traj["energy"], color=COLORS["fit"], lw=1.0, ls=":", label="energy L(µ_t, Γ_t)")
    if loss_floor is not None and loss_floor > 0:
        ax.axhline(loss_floor, color=COLORS["theory"], lw=0.8, ls=":", label=f"noise floor ½τ² = {loss_floor:.4g}")
    positive = loss[np.isfinite(loss) & (loss > 0)]
    if positive.size and positive.max() / positive.min() > 30:
        ax.set_yscale("log")
    _shade_plateaus(ax, plateaus)
    _mark_events(ax, traj)
    ax.set_xlabel("time t")
    ax.set_ylabel("loss")
    ax.set_title("Loss along the flow")
    ax.legend(fontsize="small", loc="best")
    return fig


def residual_figure(traj: Trajectory, plateaus: list[Plateau], kick_threshold: float | None = None) -> Figure:
    """The stationarity residual ``‖∇δL/δµ‖_{L²(µ)}`` on a log scale, with plateaus, events and ``g_thr`` if given."""
    fig = new_figure()
    ax = fig.add_subplot()
    t, g = traj["time"], traj["grad_norm"]
    keep = np.isfinite(g) & (g > 0)
    ax.semilogy(t[keep], g[keep], color=COLORS["main"], lw=1.2, label="‖∇δL/δµ‖ in L²(µ)")
    if kick_threshold is not None and kick_threshold > 0:
        ax.axhline(kick_threshold, color=COLORS["kick"], lw=0.8, ls=":", label=f"perturbation threshold g_thr = {kick_threshold:.3g}")
    _shade_plateaus(ax, plateaus)
    _mark_events(ax, traj)
    ax.set_xlabel("time t")
    ax.set_ylabel("stationarity residual")
    ax.set_title("Stationarity residual (log scale)")
    ax.legend(fontsize="small", loc="best")
    return fig


def sigma_figure(traj: Trajectory, phases: list[Phase]) -> Figure:
    """``λ_min(Σ_µµ)`` against ``t``; each phase's [min, max] band, labelled with max/min.

    A band is orange when its variation ``(max − min)/max`` exceeds the paper's 25%; the
    labels (ratio and variation) are written on phases wider than 8% of the run.
    """
    fig = new_figure()
    ax = fig.add_subplot()
    t, sigma = traj["time"], traj["sigma_min"]
    keep = np.isfinite(sigma) & (sigma > 0)
    ax.plot(t[keep], sigma[keep], color=COLORS["main"], lw=1.2, label="λ_min(Σ_µµ)")
    if keep.any() and sigma[keep].max() / sigma[keep].min() > 10:
        ax.set_yscale("log")
    span = float(np.nanmax(t) - np.nanmin(t)) or 1.0
    labelled = set()
    for phase in phases:
        within = phase.variation <= PAPER_VARIATION
        key = "within" if within else "beyond"
        label = None if key in labelled else (f"phase band, ≤ {PAPER_VARIATION:.0%}" if within else f"phase band, > {PAPER_VARIATION:.0%}")
        labelled.add(key)
        color = COLORS["final"] if within else COLORS["bad"]
        ax.fill_between([phase.t_start, phase.t_stop], phase.sigma_lo, phase.sigma_hi, color=color, alpha=0.25, lw=0, label=label)
        if phase.t_stop - phase.t_start >= 0.08 * span:
            ax.text((phase.t_start + phase.t_stop) / 2, phase.sigma_hi, f"×{phase.ratio:.3g} ({phase.variation:.0%})",
                    ha="center", va="bottom", fontsize=7)
    _mark_events(ax, traj)
    ax.set_xlabel("time t")
    ax.set_ylabel("λ_min(Σ_µµ)")
    ax.set_title("Conditioning by phase (max/min per phase)")
    ax.legend(fontsize="small", loc="best")
    return fig
