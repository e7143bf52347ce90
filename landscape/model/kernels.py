r"""Gaussian kernels ``κ(u, v) = E_x[σ₁(u·x + b₁) σ₂(v·x + b₂)]`` for ``x ~ N(0, I_d)``.

``(u·x, v·x)`` is a bivariate Gaussian, so κ is a two-dimensional integral:

* ``erf`` (no bias): ``κ = (2/π) arcsin(2u·v / √((1+2|u|²)(1+2|v|²)))``, smooth everywhere.
* ``relu`` (no bias): ``κ = |u||v|(sin φ + (π−φ) cos φ)/(2π)``, written in the Gram
  determinant ``D = |u|²|v|² − (u·v)²`` so that autograd stays finite (and correct: the
  ``D^{3/2}`` term has vanishing first and second derivatives) where ``u ∥ v``.
* any other σ, or any σ with a bias: the Mehler (Hermite) series in the cosine
  ``ρ = u·v/(|u||v|)``,

  .. math:: κ = Σ_{n=0}^{T} ρ^n α_n(|u|, b₁) β_n(|v|, b₂),
            \quad α_n(r, b) = E_g[σ₁(r g + b) \mathrm{He}_n(g)] / \sqrt{n!},

  a polynomial in ρ, hence smooth where particles coincide (ρ = 1). The 1-D coefficients
  come from a trapezoid rule on a wide uniform grid, which converges geometrically for
  σ analytic in a strip (tanh, sigmoid) where Gauss–Hermite does not. The truncation
  order ``T`` and grid step are parameters of :class:`HermiteQuadrature`; the size of the
  last coefficients (``tail``) estimates the truncation error, and
  ``tests/model/test_kernels.py`` measures the error against adaptive 2-D quadrature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .activations import Activation

__all__ = ["HermiteQuadrature", "erf_kernel", "relu_kernel", "gaussian_kernel"]


def erf_kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Closed-form erf kernel.

    Args:
        u: tensor of shape (M1, d).
        v: tensor of shape (M2, d).

    Returns:
        tensor of shape (M1, M2) with ``E[erf(u_i·x) erf(v_j·x)]``.
    """
    nu = 1.0 + 2.0 * (u * u).sum(-1)
    nv = 1.0 + 2.0 * (v * v).sum(-1)
    arg = 2.0 * (u @ v.T) / torch.sqrt(nu[:, None] * nv[None, :])
    return (2.0 / math.pi) * torch.asin(arg)


def relu_kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Closed-form ReLU (arc-cosine, degree 1) kernel, finite derivatives at ``u ∥ v``.

    Args:
        u: tensor of shape (M1, d).
        v: tensor of shape (M2, d).

    Returns:
        tensor of shape (M1, M2) with ``E[relu(u_i·x) relu(v_j·x)]``.
    """
    c = u @ v.T
    nn = (u * u).sum(-1)[:, None] * (v * v).sum(-1)[None, :]
    det = nn - c * c
    # Below this relative Gram determinant the sin/atan terms cancel to O(D^{3/2}) ≤ eps²·nn:
    # take their limit (0 for c > 0, -πc for c < 0), whose derivatives are the exact ones.
    small = det <= (torch.finfo(u.dtype).eps ** 2) * nn
    safe_det = torch.where(small, torch.ones_like(det), det)
    s = torch.sqrt(safe_det)
    regular = s - c * torch.atan2(s, c)
    limit = -math.pi * torch.clamp(c, max=0.0)
    return (torch.where(small, limit, regular)) / (2.0 * math.pi) + 0.5 * c


def _hermite_functions(order: int, nodes: np.ndarray) -> np.ndarray:
    """``He_n(g)/√n! · exp(−g²/4)`` at ``nodes``: shape (order+1, J).

    The Gaussian factor is folded into the three-term recurrence, which keeps every
    entry bounded (no overflow at high order and wide grids).
    """
    table = np.empty((order + 1, nodes.size))
    table[0] = np.exp(-0.25 * nodes**2)
    if order >= 1:
        table[1] = nodes * table[0]
    for n in range(1, order):
        table[n + 1] = (nodes * table[n] - math.sqrt(n) * table[n - 1]) / math.sqrt(n + 1)
    return table


@dataclass(frozen=True)
class HermiteQuadrature:
    """Mehler-series kernel for any smooth σ, with optional biases.

    Attributes:
        order: truncation order ``T`` of the series in ρ (default 128: coefficient tails
            below 1e-6, so κ errors below 1e-12, for tanh up to |w| ≈ 1.3, sigmoid up to
            |w| ≈ 3, gelu up to |w| ≈ 2.5, erf with bias up to |w| ≈ 1.5).
        step: trapezoid step in the 1-D coefficient integrals (default 0.05; the rule is
            geometrically accurate while ``step·|w|`` is well below the distance of σ's
            nearest complex singularity to the real axis).
    """

    order: int = 128
    step: float = 0.05
    _table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.order < 1 or self.step <= 0:
            raise ValueError(f"HermiteQuadrature needs order ≥ 1 and step > 0, got {self.order}, {self.step}.")
        half_width = 2.0 * math.sqrt(self.order + 1) + 12.0
        j = math.ceil(half_width / self.step)
        nodes = self.step * np.arange(-j, j + 1)
        weights = self.step * np.exp(-0.25 * nodes**2) / math.sqrt(2.0 * math.pi)
        weighted = _hermite_functions(self.order, nodes) * weights
        object.__setattr__(self, "_table", np.stack([nodes, *weighted]))

    def coefficients(self, act: Activation, radius: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Hermite coefficients ``α_n(r_i, b_i)``.

        Args:
            act: the activation σ.
            radius: tensor of shape (M,), ``|w_i|`` (without the bias).
            bias: tensor of shape (M,) or None.

        Returns:
            tensor of shape (M, order+1).
        """
        table = torch.as_tensor(self._table, dtype=radius.dtype, device=radius.device)
        z = radius[:, None] * table[0][None, :]
        if bias is not None:
            z = z + bias[:, None]
        return act(z) @ table[1:].T

    def kernel(
        self,
        act1: Activation,
        u: torch.Tensor,
        b1: torch.Tensor | None,
        act2: Activation,
        v: torch.Tensor,
        b2: torch.Tensor | None,
    ) -> torch.Tensor:
        """``E[σ₁(u_i·x + b1_i) σ₂(v_j·x + b2_j)]``, shape (M1, M2)."""
        tiny = torch.finfo(u.dtype).tiny
        ru = torch.sqrt((u * u).sum(-1) + tiny)
        rv = torch.sqrt((v * v).sum(-1) + tiny)
        rho = (u @ v.T) / (ru[:, None] * rv[None, :])
        alpha = self.coefficients(act1, ru, b1)
        beta = self.coefficients(act2, rv, b2)
        return mehler_series(rho, alpha, beta)

    def tail(self, act: Activation, radius: torch.Tensor, bias: torch.Tensor | None, terms: int = 8) -> torch.Tensor:
        """Root-sum-square of the last ``terms`` coefficients, per neuron: shape (M,).

        The truncation error of κ at |ρ| ≤ 1 is of the order of the product of two tails.
        """
        coeffs = self.coefficients(act, radius, bias)
        return torch.linalg.vector_norm(coeffs[:, -terms:], dim=-1)


def _horner(rho: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``Σ_n ρ^n α_n β_nᵀ`` by Horner's rule: ``rho`` (M1, M2), ``alpha`` (M1, T+1), ``beta`` (M2, T+1)."""
    acc = alpha[:, -1, None] * beta[None, :, -1]
    for n in range(alpha.shape[1] - 2, -1, -1):
        acc = acc * rho + alpha[:, n, None] * beta[None, :, n]
    return acc


def _derivative_coefficients(alpha: torch.Tensor) -> torch.Tensor:
    """Coefficients of ``d/dρ``: ``n α_n`` shifted down one order (shape (M, T))."""
    n = torch.arange(1, alpha.shape[1], dtype=alpha.dtype, device=alpha.device)
    return alpha[:, 1:] * n


class _MehlerSeries(torch.autograd.Function):
    """``κ = Σ_n ρ^n α_n β_nᵀ`` with hand-written derivatives that store O(M1·M2), not O(T·M1·M2).

    Autograd through the Horner loop saves every partial sum (T matrices of M1×M2: 128 MiB
    at M = 500, T = 64). Here the forward saves only its inputs; the backward and the
    forward-mode rule are again Mehler series (in ``ρ`` for ``∂κ/∂ρ``) or one pass per
    order over running powers ``ρ^n`` (for ``∂κ/∂α``, ``∂κ/∂β``), written in differentiable
    torch operations, so second derivatives (reverse-over-reverse, forward-over-reverse)
    and ``torch.func`` transforms apply.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(rho, alpha, beta):
        return _horner(rho, alpha, beta)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        rho, alpha, beta = ctx.saved_tensors
        need_rho, need_alpha, need_beta = ctx.needs_input_grad
        g_rho = g_alpha = g_beta = None
        if need_rho:
            g_rho = grad * mehler_series(rho, _derivative_coefficients(alpha), beta[:, 1:])
        if need_alpha or need_beta:
            cols_a, cols_b = [], []
            power = grad
            for n in range(alpha.shape[1]):
                if n:
                    power = power * rho
                if need_alpha:
                    cols_a.append(power @ beta[:, n])
                if need_beta:
                    cols_b.append(alpha[:, n] @ power)
            g_alpha = torch.stack(cols_a, dim=1) if need_alpha else None
            g_beta = torch.stack(cols_b, dim=1) if need_beta else None
        return g_rho, g_alpha, g_beta

    @staticmethod
    def jvp(ctx, d_rho, d_alpha, d_beta):
        rho, alpha, beta = ctx.saved_tensors
        out = torch.zeros_like(rho)
        if d_rho is not None:
            out = out + d_rho * mehler_series(rho, _derivative_coefficients(alpha), beta[:, 1:])
        if d_alpha is not None:
            out = out + mehler_series(rho, d_alpha, beta)
        if d_beta is not None:
            out = out + mehler_series(rho, alpha, d_beta)
        return out


def mehler_series(rho: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``κ_ij = Σ_{n=0}^{T} ρ_ij^n α_in β_jn``, differentiable with O(M1·M2) stored memory.

    Args:
        rho: tensor of shape (M1, M2), the cosines.
        alpha: tensor of shape (M1, T+1); beta: tensor of shape (M2, T+1).

    Returns:
        tensor of shape (M1, M2); without gradients it is the plain Horner evaluation.
    """
    if alpha.shape[1] < 2:
        return alpha[:, :1] * beta[:, 0][None, :]
    if not torch.is_grad_enabled() or not any(t.requires_grad for t in (rho, alpha, beta)):
        if not _wrapped(rho, alpha, beta):
            return _horner(rho, alpha, beta)
    return _MehlerSeries.apply(rho, alpha, beta)


def _wrapped(*tensors: torch.Tensor) -> bool:
    """Whether any tensor is a torch.func wrapper (then ``requires_grad`` says nothing)."""
    is_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return is_wrapped is not None and any(is_wrapped(t) for t in tensors)


def gaussian_kernel(
    act1: Activation,
    u: torch.Tensor,
    b1: torch.Tensor | None,
    act2: Activation,
    v: torch.Tensor,
    b2: torch.Tensor | None,
    quadrature: HermiteQuadrature,
) -> torch.Tensor:
    """The Gaussian kernel matrix, by closed form where one exists, else by ``quadrature``.

    Args:
        act1, act2: activations of the two neuron sets.
        u: tensor of shape (M1, d); v: tensor of shape (M2, d).
        b1, b2: biases of shape (M1,) / (M2,), or None.
        quadrature: used for every pair without a closed form.

    Returns:
        tensor of shape (M1, M2).
    """
    if b1 is None and b2 is None and act1.name == act2.name:
        if act1.name == "erf":
            return erf_kernel(u, v)
        if act1.name == "relu":
            return relu_kernel(u, v)
    return quadrature.kernel(act1, u, b1, act2, v, b2)
