r"""Saddle-escape perturbations (docs/theory.md §6).

* isotropic (Jin et al. 2017, the paper's scheme): every particle moves by an independent
  draw, uniform in the ball of radius ``r`` of ``R^{k+d}``;
* Hessian-guided (Yamamoto, Kim & Suzuki 2025): a draw from the Gaussian field with
  covariance ``H_µ²``, ``H_µ`` the Wasserstein Hessian. In flat coordinates
  ``Ĥ = P^{-1/2} ∇²F P^{-1/2}`` (``P = diag(p) ⊗ I``) is symmetric, so ``ξ = Ĥ z`` with
  ``z ~ N(0, I)`` has covariance ``Ĥ²`` exactly; the tangent field is ``v_i = ξ_i/√p_i``,
  rescaled so that ``‖v‖_{L²(µ)} = |ξ| = r``. Only Hessian-vector products are used
  (:func:`landscape.second_order.hessian.hessian_vector_product`); no matrix is formed.
"""

from __future__ import annotations

import numpy as np
import torch

from ..landscape import AttentionLandscape
from ..model.measure import ParticleMeasure
from ..second_order.hessian import hessian_vector_product

__all__ = ["isotropic_kick", "hessian_kick"]


def isotropic_kick(m: int, dim: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Independent uniform draws in the ball of radius ``radius`` of ``R^dim``; shape (m, dim)."""
    direction = rng.standard_normal((m, dim))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return radius * rng.random((m, 1)) ** (1.0 / dim) * direction


def hessian_kick(landscape: AttentionLandscape, measure: ParticleMeasure, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A draw with covariance ``H_µ²`` (direction), of ``L²(µ)`` norm ``radius``; shape (M, k + d).

    Falls back to zero when ``Ĥ z`` vanishes (a flat landscape has nothing to aim at).
    """
    hvp = hessian_vector_product(landscape, measure)
    m, width = measure.size, measure.features + measure.dim
    root = np.repeat(np.sqrt(measure.p), width)
    z = rng.standard_normal(m * width)
    xi = root ** -1 * hvp(torch.as_tensor(z / root, dtype=landscape.dtype, device=landscape.device)).cpu().numpy()
    norm = float(np.linalg.norm(xi))
    if not norm > 0:
        return np.zeros((m, width))
    return (radius * xi / norm / root).reshape(m, width)
