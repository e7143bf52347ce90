"""Rate figures (docs/theory.md §10, claim 4): escape time from a saddle and decay near a minimum.

Inputs are the evidence files of the ``rates`` claim:

* ``rates/escape.json``: ``{"radii", "escape_times", "lambda_min", "fitted_slope"}``;
* ``rates/decay.json``: ``{"time", "gap", "lambda_plus_min", "fitted_rate"}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .plotting import COLORS, new_figure

__all__ = ["decay_data", "decay_figure", "escape_data", "escape_figure"]


def _vector(raw: dict[str, Any], key: str, what: str) -> np.ndarray:
    try:
        value = np.asarray(raw[key], dtype=float)
    except KeyError:
        raise ValueError(f"{what} lacks {key!r}.") from None
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {key!r} is not a list of numbers.") from None
    if value.ndim != 1 or value.size < 2:
        raise ValueError(f"{what}: {key!r} must be a list of at least two numbers, got shape {value.shape}.")
    return value


def _scalar(raw: dict[str, Any], key: str, what: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what}: {key!r} must be a number, got {value!r}.")
    return float(value)


def escape_data(raw: Any, what: str = "escape.json") -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(radii, escape_times, lambda_min, fitted_slope)`` from a parsed ``escape.json``; ValueError if malformed."""
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be an object.")
    radii, times = _vector(raw, "radii", what), _vector(raw, "escape_times", what)
    if radii.shape != times.shape or np.any(radii <= 0):
        raise ValueError(f"{what}: radii must be positive and as many as escape_times.")
    return radii, times, _scalar(raw, "lambda_min", what), _scalar(raw, "fitted_slope", what)


def decay_data(raw: Any, what: str = "decay.json") -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(time, gap, lambda_plus_min, fitted_rate)`` from a parsed ``decay.json``; ValueError if malformed."""
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be an object.")
    time, gap = _vector(raw, "time", what), _vector(raw, "gap", what)
    if time.shape != gap.shape:
        raise ValueError(f"{what}: time and gap must have the same length.")
    return time, gap, _scalar(raw, "lambda_plus_min", what), _scalar(raw, "fitted_rate", what)


def escape_figure(radii: np.ndarray, times: np.ndarray, lambda_min: float, fitted_slope: float) -> Figure:
    """Escape time against ``log(1/r)``: the measurements, the fitted line, and the slope ``1/|λ_min|``.

    Both lines pass through the centroid of the measurements, so only their slopes differ.
    """
    x = np.log(1.0 / radii)
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot(x, times, "o", color=COLORS["main"], label="measured escape time")
    grid = np.linspace(x.min(), x.max(), 50)
    ax.plot(grid, times.mean() + fitted_slope * (grid - x.mean()), color=COLORS["fit"], label=f"fit, slope {fitted_slope:.3g}")
    if lambda_min != 0:
        theory = 1.0 / abs(lambda_min)
        ax.plot(grid, times.mean() + theory * (grid - x.mean()), ls="--", color=COLORS["theory"],
                label=f"theory, slope 1/|λ_min| = {theory:.3g}")
    ax.set_xlabel("log(1/r)  (r: perturbation radius)")
    ax.set_ylabel("escape time")
    ax.set_title("Saddle escape time against log(1/r)")
    ax.legend(fontsize="small", loc="best")
    return fig


def decay_figure(time: np.ndarray, gap: np.ndarray, lambda_plus_min: float, fitted_rate: float) -> Figure:
    """``L − L*`` on a log scale against time, with ``exp(−fitted·t)`` and the prediction ``exp(−2λ⁺_min t)``.

    Both reference lines end at the last positive gap (the asymptotic regime the rate is
    about), so an initial transient shows as the data lying above them early on.
    """
    keep = np.isfinite(gap) & (gap > 0)
    fig = new_figure()
    ax = fig.add_subplot()
    ax.semilogy(time[keep], gap[keep], "o", ms=3, color=COLORS["main"], label="L − L* (measured)")
    if keep.any():
        t1, g1 = time[keep][-1], gap[keep][-1]
        grid = np.linspace(time[keep][0], t1, 100)
        ax.semilogy(grid, g1 * np.exp(-fitted_rate * (grid - t1)), color=COLORS["fit"], label=f"fit, rate {fitted_rate:.3g}")
        predicted = 2.0 * lambda_plus_min
        ax.semilogy(grid, g1 * np.exp(-predicted * (grid - t1)), ls="--", color=COLORS["theory"],
                    label=f"predicted, rate 2λ⁺_min = {predicted:.3g}")
        ax.set_ylim(bottom=max(gap[keep].min() * 0.3, 1e-300))
    ax.set_xlabel("time t")
    ax.set_ylabel("L − L* (log scale)")
    ax.set_title("Decay near a global minimum")
    ax.legend(fontsize="small", loc="best")
    return fig
