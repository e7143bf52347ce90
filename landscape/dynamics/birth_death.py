r"""The stochastic birth–death step of Rotskoff, Jelassi, Bruna & Vanden-Eijnden (2019).

Over a step of length ``h``, particle ``i`` dies with probability ``α h (δL/δµ(θ_i))₊`` and
is duplicated with probability ``α h (−δL/δµ(θ_i))₊`` (docs/theory.md §6). The particle count
stays fixed: a dead particle is replaced by a copy of another particle drawn uniformly, and a
duplicate overwrites another particle drawn uniformly — in expectation the measure moves
along the Fisher–Rao direction ``−α p (δL/δµ)``. The deterministic counterpart
(Wasserstein–Fisher–Rao weights) lives in :mod:`landscape.dynamics.flow`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stochastic_birth_death"]


def stochastic_birth_death(
    theta: np.ndarray, first_variation: np.ndarray, rate: float, h: float, rng: np.random.Generator
) -> tuple[np.ndarray, int, int]:
    """One kill/clone sweep at fixed particle count (uniform weights).

    Args:
        theta: array of shape (M, k + d), the particles.
        first_variation: array of shape (M,), ``δL/δµ(θ_i)``.
        rate: α > 0; h: the step length.
        rng: the run's generator (advanced deterministically).

    Returns:
        ``(theta_new, deaths, births)``: a new array of shape (M, k + d) and the event counts.

    Raises:
        ValueError: on mismatched shapes, or fewer than two particles.
    """
    m = theta.shape[0]
    if first_variation.shape != (m,):
        raise ValueError(f"first_variation must have shape ({m},), got shape {first_variation.shape}.")
    if m < 2:
        raise ValueError("stochastic birth–death needs at least two particles.")
    prob = np.minimum(1.0, rate * h * np.abs(first_variation))
    fires = rng.random(m) < prob
    order = rng.permutation(np.flatnonzero(fires))
    theta = theta.copy()
    deaths = births = 0
    for i in order:
        other = int(rng.integers(m - 1))
        other += other >= i
        if first_variation[i] > 0:
            theta[i] = theta[other]
            deaths += 1
        else:
            theta[other] = theta[i]
            births += 1
    return theta, deaths, births
