"""Figures at critical points: Hessian spectra, ψ0 on the particles, flat curvature against its bound."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from .plotting import COLORS, literal, new_figure

__all__ = ["CurvatureRow", "SpectrumRow", "curvature_figure", "density_figure", "psi0_figure", "spectra_figure"]


@dataclass(frozen=True)
class SpectrumRow:
    """The Hessian eigenvalues found at one critical point.

    Attributes:
        name: the point's label; classification: its verdict.
        spectrum: eigenvalues on the complement of the null directions.
        null_spectrum: eigenvalues on the null directions (empty when not computed).
        null_dim: dimension of the deflated null space (None when unknown).
    """

    name: str
    classification: str
    spectrum: list[float]
    null_spectrum: list[float] = field(default_factory=list)
    null_dim: int | None = None


@dataclass(frozen=True)
class CurvatureRow:
    """The flat curvature ratio ``(d²L/ds²)/L²`` at one non-global critical point and ``4/(k R₁²)``.

    ``bound`` may be given with either sign (``4/(k R₁²)`` or the threshold ``−4/(k R₁²)``);
    :attr:`threshold` is always the negative one.
    """

    name: str
    ratio: float
    bound: float | None

    @property
    def threshold(self) -> float | None:
        """``−4/(k R₁²)``: the theorem says ``ratio ≤ threshold``."""
        return None if self.bound is None else -abs(self.bound)


def _thin_symlog_ticks(ax, axis: str, linthresh: float) -> None:
    """Keep 0 and the symlog ticks beyond ``3·linthresh`` (those just outside 0 collide with it)."""
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
    kept = [t for t in ticks if min(lo, hi) <= t <= max(lo, hi) and (t == 0 or abs(t) >= 3 * linthresh)]
    (ax.set_xticks if axis == "x" else ax.set_yticks)(kept)


def spectra_figure(rows: list[SpectrumRow]) -> Figure:
    """One line per critical point: the spectrum off the null directions, and the null directions apart.

    The x axis is symmetric-logarithmic, linear within 10⁻³ of the largest ``|λ|`` (so
    eigenvalues that are zero to working precision sit at 0); negative eigenvalues (descent directions) are
    orange, the rest blue; null-direction eigenvalues are grey crosses on their own line
    below, or, where they were deflated without being computed, their count is written.
    """
    fig = new_figure(6.4, 1.2 + (0.75 if len(rows) <= 8 else 0.4) * len(rows))
    ax = fig.add_subplot()
    values = np.concatenate([np.abs(r.spectrum + r.null_spectrum) for r in rows] + [np.zeros(1)])
    linthresh = max(1e-3 * float(values.max()), 1e-300)
    ax.set_xscale("symlog", linthresh=linthresh)
    seen: set[str] = set()

    def label(key: str, present: bool) -> str | None:
        if present and key not in seen:
            seen.add(key)
            return key
        return None

    for y, row in enumerate(rows):
        spec = np.asarray(row.spectrum, dtype=float)
        for key, mask, color in (("negative eigenvalue", spec < 0, COLORS["bad"]), ("eigenvalue ≥ 0", spec >= 0, COLORS["main"])):
            ax.plot(spec[mask], np.full(mask.sum(), -y), "o", ms=5, color=color, label=label(key, bool(mask.any())))
        if row.null_spectrum:
            ax.plot(row.null_spectrum, np.full(len(row.null_spectrum), -y - 0.3), "x", ms=5, color=COLORS["null"],
                    label=label("null directions", True))
        elif row.null_dim:
            ax.annotate(f"+ {row.null_dim} null directions deflated", (0.99, -y - 0.3), xycoords=("axes fraction", "data"),
                        ha="right", va="center", fontsize=7, color=COLORS["null"])
    ax.axvline(0.0, color=COLORS["theory"], lw=0.6)
    if values.max() > 0:
        ax.set_xlim(-2.0 * values.max(), 2.0 * values.max())
    _thin_symlog_ticks(ax, "x", linthresh)
    ax.set_yticks([-y for y in range(len(rows))], [literal(f"{r.name}\n({r.classification})") for r in rows], fontsize=7)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    ax.set_xlabel("Hessian eigenvalue λ (symmetric log scale)")
    ax.set_title("Wasserstein Hessian spectra at critical points")
    ax.legend(fontsize="small", loc="upper left")
    return fig


def density_figure(nodes: np.ndarray | list[float], weights: np.ndarray | list[float], eigenvalues: list[float], error: float | None = None) -> Figure:
    """The Hessian's spectral density (stochastic Lanczos quadrature) with the computed smallest eigenvalues on it.

    Args:
        nodes, weights: the quadrature, arrays (or lists) of shape (r,) (weights sum to 1).
        eigenvalues: the smallest eigenvalues computed directly (drawn as ticks: orange below 0).
        error: the density's W1 error estimate, for the title, if known.

    The weights are binned into a histogram of mass per bin (40 bins over the nodes' range); the
    fine spikes of the Gauss nodes are meaningful only through such averages.

    Raises:
        ValueError: when nodes and weights differ in shape or are empty.
    """
    nodes, weights = np.asarray(nodes, dtype=float), np.asarray(weights, dtype=float)
    if nodes.shape != weights.shape or nodes.ndim != 1 or nodes.size == 0:
        raise ValueError(f"density figure needs nodes and weights of one shape (r,), got {nodes.shape} and {weights.shape}.")
    fig = new_figure(6.4, 3.2)
    ax = fig.add_subplot()
    lo, hi = float(nodes.min()), float(nodes.max())
    pad = 0.02 * max(hi - lo, 1e-12)
    ax.hist(nodes, bins=np.linspace(lo - pad, hi + pad, 41), weights=weights, color=COLORS["main"], alpha=0.8,
            label="SLQ spectral mass per bin")
    eig = np.asarray(eigenvalues, dtype=float)
    for key, mask, color in (("computed λ < 0", eig < 0, COLORS["bad"]), ("computed λ ≥ 0", eig >= 0, COLORS["theory"])):
        if mask.any():  # ticks along the bottom edge (axes-fraction heights: the mass axis is logarithmic)
            ax.vlines(eig[mask], 0.0, 0.12, transform=ax.get_xaxis_transform(), lw=1.5, color=color, label=key)
    ax.axvline(0.0, color=COLORS["null"], lw=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("Hessian eigenvalue λ")
    ax.set_ylabel("spectral mass (log)")
    ax.set_title("Wasserstein Hessian spectral density" + (f" (W1 error ≈ {error:.2g})" if error is not None else ""))
    ax.legend(fontsize="small", loc="upper right")
    return fig


def psi0_figure(w: np.ndarray, psi_w: np.ndarray, u: np.ndarray, lam: float | None) -> Figure:
    """Particles' ``w`` and ψ0's ``w`` part, projected onto the teacher directions.

    Args:
        w: array of shape (M, d), the particles' inner weights.
        psi_w: array of shape (M, d), ψ0's ``w`` components per particle.
        u: array of shape (L, d), the teacher directions ``u_l``.
        lam: the eigenvalue of ψ0 (for the title), if known.

    Panels plot the coordinates ``w·u_l/|u_l|`` for consecutive pairs of teacher directions
    (up to three panels; with one direction, the second axis is ``|w⊥|``, the part of ``w``
    orthogonal to every ``u_l``). Arrows are ψ0's projected ``w`` part, with one scale for all
    panels (the longest projected arrow is a quarter of the widest coordinate range); teacher
    neurons are stars.

    Raises:
        ValueError: shapes that do not agree.
    """
    if w.ndim != 2 or psi_w.shape != w.shape or u.ndim != 2 or u.shape[1] != w.shape[1]:
        raise ValueError(f"ψ0 figure needs w (M, d), ψ0_w (M, d), u (L, d); got {w.shape}, {psi_w.shape}, {u.shape}.")
    basis = u / np.linalg.norm(u, axis=1, keepdims=True)
    coords, arrows, teacher = w @ basis.T, psi_w @ basis.T, u @ basis.T
    if len(u) == 1:
        def perp(x: np.ndarray) -> np.ndarray:
            return np.linalg.norm(x - (x @ basis.T) @ basis, axis=1, keepdims=True)

        coords = np.hstack([coords, perp(w)])
        arrows = np.hstack([arrows, perp(w + psi_w) - perp(w)])
        teacher = np.hstack([teacher, np.zeros((1, 1))])
        pairs, names = [(0, 1)], ["u_1", "|w⊥|"]
    else:
        pairs = [(i, i + 1) for i in range(min(len(u) - 1, 3))]
        names = [f"u_{i + 1}" for i in range(len(u))]
    span = max(float(np.ptp(np.concatenate([coords, teacher]), axis=0).max()), 1e-12)
    longest = float(np.linalg.norm(arrows, axis=1).max())
    scale = 0.25 * span / longest if longest > 0 else 0.0
    fig = new_figure(3.3 * len(pairs), 3.4)
    for n, (i, j) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), n + 1)
        ax.scatter(teacher[:, i], teacher[:, j], marker="*", s=120, color=COLORS["plateau"], label="teacher u_l", zorder=3)
        ax.scatter(coords[:, i], coords[:, j], s=18, color=COLORS["main"], label="particles w_i", zorder=4)
        ax.quiver(coords[:, i], coords[:, j], scale * arrows[:, i], scale * arrows[:, j], angles="xy", scale_units="xy",
                  scale=1.0, color=COLORS["kick"], width=0.006, label="ψ0 (w part)", zorder=5)
        ax.set_xlabel(f"w · {names[i]}/|{names[i]}|" if names[i].startswith("u") else names[i])
        ax.set_ylabel(f"w · {names[j]}/|{names[j]}|" if names[j].startswith("u") else names[j])
        ax.set_aspect("equal", adjustable="datalim")
        if n == 0:
            ax.legend(fontsize="x-small", loc="best")
    fig.axes[0].set_title("ψ0 on the particles" + (f" (λ_min = {lam:.3g})" if lam is not None else ""), fontsize="medium", loc="left")
    return fig


def _tick_label(name: str, width: int = 18, lines: int = 3) -> str:
    """``name`` wrapped at ``width`` characters on at most ``lines`` lines (``…`` marks a cut)."""
    wrapped = textwrap.wrap(name, width) or [""]
    if len(wrapped) > lines:
        wrapped = [*wrapped[: lines - 1], textwrap.shorten(" ".join(wrapped[lines - 1 :]), width, placeholder="…")]
    return "\n".join(wrapped)


def curvature_figure(rows: list[CurvatureRow]) -> Figure:
    """The measured ratio ``(d²L/ds²)/L(µ)²`` per point beside ``−4/(k R₁²)``.

    The bound says ``ratio ≤ −4/(k R₁²)``; a point above its bar (orange) contradicts it.
    """
    fig = new_figure(6.4, 3.6 if len(rows) <= 4 else 4.4)
    ax = fig.add_subplot()
    holds = [r.threshold is None or r.ratio <= r.threshold for r in rows]
    for ok, color, label in ((True, COLORS["main"], "measured (d²L/ds²)/L²"), (False, COLORS["bad"], "contradicts the bound")):
        idx = [i for i, h in enumerate(holds) if h == ok]
        if idx:
            ax.plot(idx, [rows[i].ratio for i in idx], "o", ms=7, color=color, label=label)
    bars = [(i, r.threshold) for i, r in enumerate(rows) if r.threshold is not None]
    for n, (i, threshold) in enumerate(bars):
        ax.plot([i - 0.3, i + 0.3], [threshold, threshold], color=COLORS["theory"], lw=1.5, label=None if n else "bound −4/(k R₁²)")
        ax.annotate(f"{threshold:.3g}", (i, threshold), xytext=(0, 2), textcoords="offset points", fontsize=7,
                    va="bottom", ha="center")
    for i, row in enumerate(rows):
        ax.annotate(f"{row.ratio:.3g}", (i, row.ratio), xytext=(6, 0), textcoords="offset points", fontsize=7, va="center")
    ax.axhline(0.0, color=COLORS["null"], lw=0.6)
    scales = [abs(r.ratio) for r in rows if r.ratio] + [abs(r.bound) for r in rows if r.bound]
    linthresh = min([*scales, 1.0])
    ax.set_yscale("symlog", linthresh=linthresh)
    lowest = min([r.ratio for r in rows] + [t for _, t in bars])
    if all(r.ratio <= 0 for r in rows) and lowest < 0:
        ax.set_ylim(3.0 * lowest, linthresh)
    _thin_symlog_ticks(ax, "y", linthresh)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    if len(rows) > 4:  # about four wrapped labels fit side by side; more stand upright, two lines each
        ax.set_xticks(range(len(rows)), [literal(_tick_label(r.name, 26, 2)) for r in rows], fontsize=7, rotation=90)
    else:
        ax.set_xticks(range(len(rows)), [literal(_tick_label(r.name)) for r in rows], fontsize=7)
    ax.set_ylabel("curvature ratio (symlog)")
    ax.set_title("Flat second variation against the bound")
    fig.legend(fontsize="small", loc="outside lower center", ncols=3)  # below the axes: never over a bar
    return fig
