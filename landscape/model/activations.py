"""Activation functions σ of the teacher and the student network.

An :class:`Activation` is a named, elementwise torch function with the two facts the
rest of the toolkit needs about it: whether it is odd (particles at ``w`` and ``-w``
then carry the same feature up to sign) and whether it is positively homogeneous
(ReLU: ``σ(cz) = c σ(z)`` for ``c > 0``, which adds a null direction per particle).

Built-ins: ``erf``, ``relu``, ``tanh``, ``sigmoid``, ``gelu``. A user-supplied σ is any
smooth torch function: ``Activation("softplus", torch.nn.functional.softplus)``.

Derivatives ``σ, σ', …, σ⁽ᵏ⁾`` on a grid (:meth:`Activation.derivatives`, used by the Hermite
coefficients' derivatives in :mod:`landscape.model.kernels`) come from closed forms for the
built-ins and from repeated autograd for any other σ; both are the exact derivatives of ``fn``.

``relu`` is not differentiable at 0; its derivative is taken as ``relu'(0) = 0`` (torch's),
so a ReLU particle at ``w = 0`` has velocity exactly 0 in both backends although one-sided
slopes exist there — the generalised gradient chosen and why: docs/theory.md §5.B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

__all__ = ["Activation", "get_activation", "BUILTIN_ACTIVATIONS"]


@dataclass(frozen=True)
class Activation:
    """An elementwise activation ``σ: R → R``.

    Attributes:
        name: identifier; two activations with the same name are treated as equal.
        fn: torch function applied elementwise; must be differentiable twice.
        odd: ``σ(−z) = −σ(z)``.
        homogeneous: ``σ(cz) = cσ(z)`` for ``c > 0`` (ReLU; such a σ is not differentiable
            at 0, where ``σ'(0) = 0`` is used: docs/theory.md §5.B).
        higher: closed form of the derivatives, ``higher(z, j, k) = [σ⁽ʲ⁾(z), …, σ⁽ᵏ⁾(z)]``
            (0 ≤ j ≤ k; ``σ⁽⁰⁾(z)`` is ``fn(z)`` itself), equal to autograd's derivatives of
            ``fn`` to rounding; None: autograd computes them.
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    odd: bool = False
    homogeneous: bool = False
    higher: Callable[[torch.Tensor, int, int], list[torch.Tensor]] | None = field(default=None, compare=False, repr=False)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)

    def derivatives(self, z: torch.Tensor, order: int, lowest: int = 0) -> list[torch.Tensor]:
        """``[σ⁽ˡᵒʷᵉˢᵗ⁾(z), …, σ⁽ᵒʳᵈᵉʳ⁾(z)]``, each of the shape of ``z``, without autograd history.

        The derivatives come from :attr:`higher` or, without one, from ``order`` nested
        autograd passes through ``fn``.

        Raises:
            ValueError: unless ``0 ≤ lowest ≤ order``.
        """
        if not 0 <= lowest <= order:
            raise ValueError(f"derivatives need 0 ≤ lowest ≤ order, got lowest={lowest}, order={order}.")
        z = z.detach()
        if self.higher is not None:
            with torch.no_grad():
                return self.higher(z, lowest, order)
        with torch.enable_grad():
            z = z.requires_grad_(True)
            out = [self.fn(z)]
            for _ in range(order):
                out.append(torch.autograd.grad(out[-1].sum(), z, create_graph=True)[0])
        return [t.detach() for t in out[lowest:]]


def _polynomial_derivatives(fn: Callable[[torch.Tensor], torch.Tensor], slope: list[float]) -> Callable[[torch.Tensor, int, int], list[torch.Tensor]]:
    """σ and its derivatives for a σ with ``σ' = P(σ)``, ``P`` the polynomial of coefficients ``slope`` (lowest first).

    ``σ⁽ᵏ⁾ = P_k(σ)`` with ``P_1 = P`` and ``P_{k+1} = P_k' · P``: sigmoid (``P(s) = s − s²``), tanh (``P(t) = 1 − t²``).
    """
    base = np.polynomial.Polynomial(slope)

    def higher(z: torch.Tensor, lowest: int, order: int) -> list[torch.Tensor]:
        s = fn(z)
        out, poly = [s] if lowest == 0 else [], base
        for k in range(1, order + 1):
            if k < lowest:
                poly = poly.deriv() * base
                continue
            acc = torch.mul(s, poly.coef[-1]).add_(poly.coef[-2])  # Horner in place: one allocation per order
            for c in poly.coef[-3::-1]:
                acc.mul_(s)
                if c:
                    acc.add_(c)
            out.append(acc)
            poly = poly.deriv() * base
        return out

    return higher


def _gaussian_derivatives(z: torch.Tensor, order: int, scale: float) -> list[torch.Tensor]:
    """``dᵐ/dzᵐ [scale · e^{−z²/2}] = scale · (−1)ᵐ Heₘ(z) e^{−z²/2}`` for ``m = 0 … order−1`` (probabilists' Hermite)."""
    gauss = scale * torch.exp(-0.5 * z * z)
    out, prev, cur = [], torch.zeros_like(z), torch.ones_like(z)
    for m in range(order):
        out.append(cur * gauss if m % 2 == 0 else -cur * gauss)
        prev, cur = cur, z * cur - m * prev
    return out


def _erf_higher(z: torch.Tensor, lowest: int, order: int) -> list[torch.Tensor]:
    """erf and erf⁽ᵏ⁾(z) = (2/√π) dᵏ⁻¹/dzᵏ⁻¹ e^{−z²}, i.e. the Gaussian derivatives at ``√2 z`` times ``√2^{k−1}``."""
    x = math.sqrt(2.0) * z
    scaled = [d * math.sqrt(2.0) ** m for m, d in enumerate(_gaussian_derivatives(x, order, 2.0 / math.sqrt(math.pi)))]
    return ([torch.erf(z)] if lowest == 0 else []) + scaled[max(lowest, 1) - 1 :]


def _gelu_higher(z: torch.Tensor, lowest: int, order: int) -> list[torch.Tensor]:
    """gelu = zΦ(z) and ``gelu⁽ᵏ⁾ = zΦ⁽ᵏ⁾ + kΦ⁽ᵏ⁻¹⁾``, ``Φ⁽ᵐ⁾ = φ⁽ᵐ⁻¹⁾`` (m ≥ 1)."""
    cdf = [0.5 * (1.0 + torch.erf(z / math.sqrt(2.0))), *_gaussian_derivatives(z, order, 1.0 / math.sqrt(2.0 * math.pi))]
    head = [torch.nn.functional.gelu(z)] if lowest == 0 else []
    return head + [z * cdf[k] + k * cdf[k - 1] for k in range(max(lowest, 1), order + 1)]


def _relu_higher(z: torch.Tensor, lowest: int, order: int) -> list[torch.Tensor]:
    """relu, relu' = 1[z > 0] (``relu'(0) = 0``, torch's), higher derivatives 0 (as autograd gives)."""
    return [torch.relu(z) if k == 0 else (z > 0).to(z.dtype) if k == 1 else torch.zeros_like(z) for k in range(lowest, order + 1)]


BUILTIN_ACTIVATIONS: dict[str, Activation] = {
    "erf": Activation("erf", torch.erf, odd=True, higher=_erf_higher),
    "relu": Activation("relu", torch.relu, homogeneous=True, higher=_relu_higher),
    "tanh": Activation("tanh", torch.tanh, odd=True, higher=_polynomial_derivatives(torch.tanh, [1.0, 0.0, -1.0])),
    "sigmoid": Activation("sigmoid", torch.sigmoid, higher=_polynomial_derivatives(torch.sigmoid, [0.0, 1.0, -1.0])),
    "gelu": Activation("gelu", torch.nn.functional.gelu, higher=_gelu_higher),
}


def get_activation(spec: str | Activation) -> Activation:
    """Return the activation named ``spec`` (or ``spec`` itself if already one).

    Raises:
        ValueError: if the name is not a built-in activation.
    """
    if isinstance(spec, Activation):
        return spec
    try:
        return BUILTIN_ACTIVATIONS[spec]
    except (KeyError, TypeError):
        known = ", ".join(sorted(BUILTIN_ACTIVATIONS))
        raise ValueError(f"unknown activation {spec!r}; expected one of: {known}.") from None
