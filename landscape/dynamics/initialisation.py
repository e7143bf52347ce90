r"""Initial measures for the flow: a Gaussian draw, a small region, a file, or a saddle.

* ``gaussian``: ``a_i ~ N(0, s² I_k)``, ``w_i ~ N(0, s² I_d / d)`` (so ``|w_i| ≈ s``), uniform weights.
* ``region``: one such draw ``(a_0, w_0)``, then every particle ``a_i = a_0 + r ξ_i/√k``,
  ``w_i = w_0 + r ζ_i/√d`` with standard normal ``ξ_i, ζ_i``: all particles within about
  ``r`` of one point (docs/theory.md §10.7, the "poor initialisation").
* ``file``: the measure stored in an ``.npz`` file.
* ``saddle``: the file, refused unless its stationarity residual is at most ``saddle_tol``
  (a run "started exactly at a saddle").
"""

from __future__ import annotations

import math

import numpy as np

from ..landscape import AttentionLandscape
from ..model.measure import ParticleMeasure
from .config import InitConfig

__all__ = ["initial_measure"]


def initial_measure(config: InitConfig, landscape: AttentionLandscape, features: int) -> ParticleMeasure:
    """The initial measure that ``config`` describes.

    Args:
        config: the ``[init]`` table.
        landscape: the problem's landscape (fixes ``d``, checks files).
        features: ``k``.

    Returns:
        A measure with ``a`` of shape (M, k), ``w`` of shape (M, d) and positive weights.

    Raises:
        ValueError: an unreadable or ill-fitting measure file, a zero weight (the particle
            velocity ``(1/p_i) ∂F/∂θ_i`` needs ``p_i > 0``), or a ``saddle`` start that is
            not stationary.
    """
    dim = landscape.input_dim
    if config.kind in ("file", "saddle"):
        measure = ParticleMeasure.load(config.measure)
        landscape.check_measure(measure, features=features)
        if np.any(measure.p <= 0):
            raise ValueError(f"[init] measure {config.measure!r} has zero weights; remove those particles.")
        if config.kind == "saddle":
            residual = float(landscape.stationarity(*measure.tensors(landscape.dtype, landscape.device)))
            if not residual <= config.saddle_tol:
                raise ValueError(
                    f"[init] kind = \"saddle\" but the measure's stationarity residual is {residual:.3e} "
                    f"> saddle_tol = {config.saddle_tol:g}."
                )
        return measure
    rng = np.random.default_rng(config.seed)
    m, s = config.particles, config.scale
    if config.kind == "gaussian":
        a = s * rng.standard_normal((m, features))
        w = s * rng.standard_normal((m, dim)) / math.sqrt(dim)
    else:
        a0 = s * rng.standard_normal(features)
        w0 = s * rng.standard_normal(dim) / math.sqrt(dim)
        a = a0 + config.radius * rng.standard_normal((m, features)) / math.sqrt(features)
        w = w0 + config.radius * rng.standard_normal((m, dim)) / math.sqrt(dim)
    return ParticleMeasure(a, w)
