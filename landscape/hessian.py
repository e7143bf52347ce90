r"""Hessian-vector products of the particle objective ``F(θ_1, …, θ_M)`` (THEORY.md §7).

The Euclidean Hessian ``∇²F`` is never formed: ``∇²F·v`` is a forward-mode derivative
(``jvp``) of the reverse-mode gradient (``grad``), and several vectors are pushed through
at once with ``vmap``. The flat layout is the particle-major one of
:meth:`AttentionLandscape.objective`: ``[a_1, w_1, a_2, w_2, …]``, length ``n = M·(k+d)``.

Example:
    >>> hvp = hessian_vector_product(landscape, measure)        # doctest: +SKIP
    >>> hvp(torch.randn(hvp.size, dtype=torch.float64)).shape    # doctest: +SKIP
    torch.Size([n])
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.func import grad, jvp, vmap

from .measure import ParticleMeasure
from .problem import AttentionLandscape

__all__ = ["HessianVectorProduct", "hessian_vector_product", "gradient"]


class HessianVectorProduct:
    """The map ``V ↦ ∇²F(θ)·V`` at a fixed point ``θ``, for ``V`` of shape (n,) or (n, b).

    Attributes:
        objective: ``F``, a pure torch function of a flat vector of shape (n,).
        theta: tensor of shape (n,), the point.
        size: ``n``.
        calls: the number of Hessian-vector products computed so far (a batch of ``b``
            columns counts ``b``).
    """

    def __init__(self, objective: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor) -> None:
        self.objective = objective
        self.theta = theta.detach()
        self.size = int(theta.numel())
        self.calls = 0
        gradient_fn = grad(objective)

        def single(v: torch.Tensor) -> torch.Tensor:
            return jvp(gradient_fn, (self.theta,), (v,))[1]

        self._single = single
        self._batched = vmap(single, in_dims=1, out_dims=1)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """``∇²F·v``; ``v`` of shape (n,) or (n, b), same dtype and device as ``theta``.

        Raises:
            ValueError: when the leading dimension is not ``n`` or ``v`` has more than 2 dims.
        """
        v = torch.as_tensor(v, dtype=self.theta.dtype, device=self.theta.device)
        if v.ndim not in (1, 2) or v.shape[0] != self.size:
            raise ValueError(f"v must have shape ({self.size},) or ({self.size}, b), got shape {tuple(v.shape)}.")
        if v.ndim == 1:
            self.calls += 1
            return self._single(v)
        self.calls += v.shape[1]
        if v.shape[1] == 0:
            return torch.zeros_like(v)
        return self._batched(v)


def hessian_vector_product(landscape: AttentionLandscape, measure: ParticleMeasure) -> HessianVectorProduct:
    """The Euclidean Hessian-vector product of ``F`` at ``measure`` (weights ``p`` held fixed).

    Args:
        landscape: the attention landscape.
        measure: the particle measure ``µ`` (M particles, ``a`` (M, k), ``w`` (M, d)).

    Returns:
        A callable mapping ``V`` of shape (n,) or (n, b), ``n = M·(k+d)``, to ``∇²F·V`` of
        the same shape (particle-major layout).

    Raises:
        ValueError: when the measure does not fit the problem.
    """
    objective, theta = landscape.objective(measure)
    return HessianVectorProduct(objective, theta)


def gradient(landscape: AttentionLandscape, measure: ParticleMeasure) -> torch.Tensor:
    """``∇F(θ)``, shape (n,) (particle-major). Its block ``i`` is ``p_i ∇_θ δL/δµ(θ_i)``."""
    objective, theta = landscape.objective(measure)
    return grad(objective)(theta)
