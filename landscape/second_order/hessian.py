r"""Hessian-vector products of the particle objective ``F(θ_1, …, θ_M)`` (docs/theory.md §7).

The Euclidean Hessian ``∇²F`` is never formed. Two ways to get ``∇²F·v``, both checked
against dense Hessians in float64 (``tests/second_order/test_hessian.py``):

* ``mode="forward"``: a forward-mode derivative (``torch.func.jvp``) of the reverse-mode
  gradient (``torch.func.grad``), several vectors at once with ``vmap``;
* ``mode="reverse"`` (the default): the gradient's graph is built once at ``θ`` and each
  product is one more backward pass through it (``autograd.grad(∇F, θ, v)``; batches with
  ``is_grads_batched``). It skips the per-call re-tracing of the forward transform and
  measures 5–15× faster on CPU (``benchmarks/bench_second_order.py``).

The flat layout is the particle-major one of
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

from ..landscape import AttentionLandscape
from ..model.measure import ParticleMeasure

__all__ = ["HessianVectorProduct", "hessian_vector_product", "gradient", "HVP_MODES"]

HVP_MODES = ("reverse", "forward")


class HessianVectorProduct:
    """The map ``V ↦ ∇²F(θ)·V`` at a fixed point ``θ``, for ``V`` of shape (n,) or (n, b).

    Args:
        objective: ``F``; theta: the point, shape (n,); mode: ``"reverse"`` or ``"forward"``.

    Raises:
        ValueError: on an unknown mode.

    Attributes:
        objective: ``F``, a pure torch function of a flat vector of shape (n,).
        theta: tensor of shape (n,), the point.
        size: ``n``.
        calls: the number of Hessian-vector products computed so far (a batch of ``b``
            columns counts ``b``).
    """

    def __init__(self, objective: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, mode: str = "reverse") -> None:
        if mode not in HVP_MODES:
            raise ValueError(f"mode must be one of {', '.join(HVP_MODES)}, got {mode!r}.")
        self.objective = objective
        self.theta = theta.detach()
        self.size = int(theta.numel())
        self.mode = mode
        self.calls = 0
        if mode == "forward":
            gradient_fn = grad(objective)

            def single(v: torch.Tensor) -> torch.Tensor:
                return jvp(gradient_fn, (self.theta,), (v,))[1]

            self._single = single
            self._batched = vmap(single, in_dims=1, out_dims=1)
        else:
            point = self.theta.clone().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(objective(point), point, create_graph=True)

            def single(v: torch.Tensor) -> torch.Tensor:
                return torch.autograd.grad(g, point, v, retain_graph=True)[0]

            def batched(v: torch.Tensor) -> torch.Tensor:
                return torch.autograd.grad(g, point, v.T, retain_graph=True, is_grads_batched=True)[0].T

            self._single, self._batched = single, batched

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
            return self._single(v).detach()
        self.calls += v.shape[1]
        if v.shape[1] == 0:
            return torch.zeros_like(v)
        if v.shape[1] == 1:
            return self._single(v[:, 0]).detach()[:, None]
        return self._batched(v).detach()


def hessian_vector_product(
    landscape: AttentionLandscape, measure: ParticleMeasure, mode: str = "reverse"
) -> HessianVectorProduct:
    """The Euclidean Hessian-vector product of ``F`` at ``measure`` (weights ``p`` held fixed).

    Args:
        landscape: the attention landscape.
        measure: the particle measure ``µ`` (M particles, ``a`` (M, k), ``w`` (M, d)).
        mode: ``"reverse"`` (graph of ``∇F`` built once, default) or ``"forward"``
            (``jvp`` of ``grad``, vmap-batched).

    Returns:
        A callable mapping ``V`` of shape (n,) or (n, b), ``n = M·(k+d)``, to ``∇²F·V`` of
        the same shape (particle-major layout).

    Raises:
        ValueError: when the measure does not fit the problem or the mode is unknown.
    """
    objective, theta = landscape.objective(measure)
    return HessianVectorProduct(objective, theta, mode)


def gradient(landscape: AttentionLandscape, measure: ParticleMeasure) -> torch.Tensor:
    """``∇F(θ)``, shape (n,) (particle-major). Its block ``i`` is ``p_i ∇_θ δL/δµ(θ_i)``."""
    objective, theta = landscape.objective(measure)
    return grad(objective)(theta)
