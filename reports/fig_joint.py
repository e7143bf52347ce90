"""Joint-training figure (docs/theory.md §6b, the paper's experiment): the real model's loss curves beside the flow.

Inputs are the evidence files of the ``joint-training`` claim:

* ``joint-training/paper_comparison.json`` (full profile): ``flow``, ``sampled_flow`` and ``two_timescale``
  (objects) and ``joint`` (a list), each with ``time`` and ``loss`` (``L_N`` at the run's states), the prompts
  runs also with ``attention_rate`` and ``learning_rate``;
* ``joint-training/trajectories.json`` (both profiles): ``flow`` and ``sampled_flow`` (objects), ``joint`` (a
  list over settings and seeds, each with ``attention_rate``, ``batch``, ``seed``) and ``control``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .plotting import COLORS, new_figure

__all__ = ["Curve", "curves_figure", "paper_curves", "small_curves"]

#: colours of the joint runs, in the order they are drawn (after the flows and the two-timescale run).
JOINT_COLORS = ("#CC79A7", "#D55E00", "#E69F00", "#56B4E9")


@dataclass(frozen=True)
class Curve:
    """One loss curve: ``time`` and ``loss`` of shape (R,), its legend ``label``, drawn as ``role``
    (``flow``, ``sampled``, ``limit``, ``joint`` or ``control``)."""

    label: str
    time: np.ndarray
    loss: np.ndarray
    role: str


def _curve(raw: Any, label: str, role: str, what: str) -> Curve:
    if not isinstance(raw, dict):
        raise ValueError(f"{what}: {label} must be an object.")
    try:
        time, loss = np.asarray(raw["time"], dtype=float), np.asarray(raw["loss"], dtype=float)
    except KeyError as err:
        raise ValueError(f"{what}: {label} lacks {err.args[0]!r}.") from None
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {label}'s time and loss must be lists of numbers.") from None
    if time.ndim != 1 or time.shape != loss.shape or time.size < 2:
        raise ValueError(f"{what}: {label}'s time and loss must be two lists of the same length ≥ 2.")
    return Curve(label, time, loss, role)


def _runs(raw: dict[str, Any], key: str, what: str) -> list[Any]:
    runs = raw.get(key)
    if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
        raise ValueError(f"{what}: {key!r} must be a list of objects.")
    return runs


def paper_curves(raw: Any, what: str = "paper_comparison.json") -> list[Curve]:
    """The flows, the two-timescale run and every joint setting of a parsed ``paper_comparison.json``; ValueError if malformed."""
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be an object.")
    curves = [_curve(raw.get("flow"), "landscape flow (exact, L_N at its states)", "flow", what),
              _curve(raw.get("sampled_flow"), "sampled finite-N flow", "sampled", what),
              _curve(raw.get("two_timescale"), "SGD, W = Γ*(µ) after every step (two-timescale)", "limit", what)]
    for run in _runs(raw, "joint", what):
        label = f"joint SGD, attention_rate {run.get('attention_rate')}, step {run.get('learning_rate')}"
        curves.append(_curve(run, label, "joint", what))
    return curves


def small_curves(raw: Any, what: str = "trajectories.json") -> list[Curve]:
    """The flows and the first seed of every setting of a parsed ``trajectories.json``; ValueError if malformed."""
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be an object.")
    curves = [_curve(raw.get("flow"), "landscape flow (exact L_N)", "flow", what)]
    if "sampled_flow" in raw:
        curves.append(_curve(raw["sampled_flow"], "sampled finite-N flow", "sampled", what))
    first_seed = [run for run in _runs(raw, "joint", what) if run.get("seed") == 0]
    for run in first_seed:
        label = f"joint SGD, attention_rate {run.get('attention_rate')}, batch {run.get('batch')}"
        curves.append(_curve(run, label, "joint", what))
    controls = [run for run in _runs(raw, "control", what) if run.get("seed") == 0]
    curves += [_curve(run, "joint SGD, W frozen (control)", "control", what) for run in controls[:1]]
    return curves


def curves_figure(curves: list[Curve], title: str) -> Figure:
    """The loss curves on a log scale against time: flows as lines, the prompts runs as lines with their rows marked."""
    fig = new_figure()
    ax = fig.add_subplot()
    joint = iter(JOINT_COLORS * (1 + len(curves) // len(JOINT_COLORS)))
    for curve in curves:
        keep = np.isfinite(curve.loss) & (curve.loss > 0)
        t, loss = curve.time[keep], curve.loss[keep]
        if curve.role == "flow":
            ax.semilogy(t, loss, color=COLORS["theory"], lw=2.0, label=curve.label)
        elif curve.role == "sampled":
            ax.semilogy(t, loss, color=COLORS["null"], lw=2.0, ls="--", label=curve.label)
        elif curve.role == "control":
            ax.semilogy(t, loss, color=COLORS["null"], lw=1.0, ls=":", label=curve.label)
        elif curve.role == "limit":
            ax.semilogy(t, loss, color=COLORS["main"], lw=1.2, marker=".", ms=3, label=curve.label)
        else:
            ax.semilogy(t, loss, color=next(joint), lw=1.0, marker=".", ms=3, label=curve.label)
    ax.set_xlabel("time t (SGD: step · learning_rate)")
    ax.set_ylabel("L_N(µ_t)")
    ax.set_title(title)
    ax.legend(fontsize="x-small", loc="best")
    return fig
