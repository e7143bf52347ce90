"""Helpers shared by the subcommands of the ``landscape`` command."""

from __future__ import annotations

import argparse
import sys

import torch

__all__ = ["Parser", "UsageError", "check_device", "judge_errors", "QUADRATURE_RTOL", "SAMPLING_RTOL", "HARD_RTOL"]

#: a quadrature error estimate (truncation + step) above this, relative to the value's scale, warns.
QUADRATURE_RTOL = 1e-8
#: a sampling standard error above this, relative to the value's scale, warns.
SAMPLING_RTOL = 1e-3
#: a quadrature error estimate of a loss above this, relative to its scale, is refused.
HARD_RTOL = 1e-2
#: the loss scale below which a loss is not judged relative to itself (fraction of ½(tr Σ_°° + τ²)).
LOSS_FLOOR = 1e-6


class UsageError(ValueError):
    """Bad command-line usage."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors raise :class:`UsageError` (one line, exit 2) instead of exiting."""

    def error(self, message: str) -> None:  # one line, exit 2
        raise UsageError(message)


def check_device(name: str) -> str:
    """``name`` if it is ``cpu`` or an available ``cuda[:N]``.

    Raises:
        ValueError: CUDA requested but unavailable, or a device of another kind.
    """
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine.")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {name!r}.")
    return name


def _scales(result: dict, ceiling: float) -> dict[str, float]:
    """What each reported number's error is judged relative to (README, "Error estimates")."""
    gamma = max((abs(x) for row in result["gamma"] for x in row), default=0.0)
    loss_floor = LOSS_FLOOR * ceiling
    return {
        "loss": max(abs(result["loss"]), loss_floor),
        "loss_inf": max(abs(result["loss_inf"]), loss_floor),
        "grad_norm": ceiling,
        "first_variation": ceiling,
        "sigma_min": abs(result["sigma_min"] * result["sigma_cond"]),
        "sigma_cond": abs(result["sigma_cond"]),
        "gamma": gamma,
    }


def judge_errors(result: dict, bounds: tuple[float, float], sampling_key: str) -> None:
    """Warn on stderr about, or refuse, the error estimates in ``result["errors"]``.

    Args:
        result: an evaluation dict with ``errors`` (:meth:`Evaluation.to_dict`).
        bounds: the a-priori loss bounds ``(½τ², ½(tr Σ_°° + τ²))``.
        sampling_key: the setting that sets the sample size (``samples`` or ``fourth_moment_samples``).

    Raises:
        ValueError: one line naming the setting, when a loss's quadrature error estimate
            exceeds ``HARD_RTOL`` of its scale, or a loss lies outside ``bounds`` by more than
            its estimate.
    """
    errors = result["errors"]
    lower, ceiling = bounds
    scales = _scales(result, ceiling)
    for name in ("loss", "loss_inf"):
        value, total = result[name], errors[name]["total"]
        slack = total + 1e-12 * ceiling
        if not lower - slack <= value <= ceiling + slack:
            raise ValueError(
                f"{name} = {value:.6g} lies outside its a-priori bounds [{lower:.6g}, {ceiling:.6g}] by more than "
                f"its error estimate {total:.1e}; raise hermite_order / lower hermite_step."
            )
        quad = errors[name]["truncation"] + errors[name]["quadrature_step"]
        if quad > HARD_RTOL * scales[name]:
            raise ValueError(
                f"{name} error estimate {quad:.1e} (relative {quad / scales[name]:.1e}) exceeds the limit "
                f"{HARD_RTOL:g}; {_remedy(errors[name], sampling_key, quadrature_only=True)}."
            )
    for name, parts in errors.items():
        scale = scales[name]
        if scale <= 0:
            continue
        quad = parts["truncation"] + parts["quadrature_step"]
        if quad > QUADRATURE_RTOL * scale or parts["sampling"] > SAMPLING_RTOL * scale:
            tol = QUADRATURE_RTOL if quad > QUADRATURE_RTOL * scale else SAMPLING_RTOL
            print(
                f"warning: {name} error estimate {parts['total']:.1e} (relative {parts['total'] / scale:.1e}) "
                f"exceeds {tol:g}; {_remedy(parts, sampling_key, scale=scale)}",
                file=sys.stderr,
            )


def _remedy(parts: dict, sampling_key: str, quadrature_only: bool = False, scale: float | None = None) -> str:
    """The settings to change, for the sources that exceed their tolerance (all nonzero ones without ``scale``)."""
    def over(key: str, tol: float) -> bool:
        return parts[key] > (tol * scale if scale is not None else 0.0)

    actions = []
    if over("truncation", QUADRATURE_RTOL):
        actions.append("raise hermite_order")
    if over("quadrature_step", QUADRATURE_RTOL):
        actions.append("lower hermite_step")
    if not quadrature_only and over("sampling", SAMPLING_RTOL):
        actions.append(f"raise {sampling_key}")
    return " / ".join(actions)
