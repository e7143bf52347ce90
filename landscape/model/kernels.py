r"""Gaussian kernels ``κ(u, v) = E_x[σ₁(u·x + b₁) σ₂(v·x + b₂)]`` for ``x ~ N(0, I_d)``.

``(u·x, v·x)`` is a bivariate Gaussian, so κ is a two-dimensional integral:

* ``erf`` (no bias): ``κ = (2/π) arcsin(2u·v / √((1+2|u|²)(1+2|v|²)))``, smooth everywhere;
  evaluated as an ``atan2`` of normalised vectors with ``1 − arg²`` written without
  cancellation (:func:`erf_kernel`), so value and derivatives are right to rounding for every
  finite weight (no overflow up to the float range; the |w| → ∞ limit is the sign kernel
  ``(2/π) arcsin(û·v̂)``).
* ``relu`` (no bias): ``κ = |u||v|(sin φ + (π−φ) cos φ)/(2π)``, written in the Gram
  determinant ``D = |u|²|v|² − (u·v)²`` so that autograd stays finite (and correct: the
  ``D^{3/2}`` term has vanishing first and second derivatives) where ``u ∥ v``. At ``u = 0``
  κ is positively homogeneous, not differentiable; autograd through the limit branch gives
  ``∇_u κ(0, v) = 0``, the convention ``relu'(0) = 0`` (docs/theory.md §5.B).
* any other σ, or any σ with a bias: the Mehler (Hermite) series

  .. math:: κ = Σ_{n=0}^{T} ρ^n α_n(|u|, b₁) β_n(|v|, b₂),
            \quad α_n(r, b) = E_g[σ₁(r g + b) \mathrm{He}_n(g)] / \sqrt{n!},
            \quad ρ = u·v/(|u||v|),

  a polynomial in ρ, hence smooth where particles coincide (ρ = 1). The 1-D coefficients
  come from a trapezoid rule on a wide uniform grid, which converges geometrically for
  σ analytic in a strip (tanh, sigmoid) where Gauss–Hermite does not. The truncation
  order ``T`` and grid step are parameters of :class:`HermiteQuadrature`; the size of the
  last coefficients (``tail``) estimates the truncation error, and
  ``tests/model/test_kernels.py`` measures the error against adaptive 2-D quadrature.

  Small radii (a neuron at or near ``w = 0``): ρ is singular at ``|u| = 0`` and ``α_n(r)``
  (n ≥ 1), of true size ``O(rⁿ)``, is computed with an absolute rounding error ``ε``, so the
  derivatives ``∝ α_n/rⁿ`` of the ρ-form are rounding noise over ``rⁿ`` (1e135 at
  ``|u| = 1e-154``). The series is therefore written in the un-normalised variable,
  ``ρⁿ α_n β_n = (u·v)ⁿ A_n(|u|) B_n(|v|)`` with ``A_n(r) = α_n(r)/rⁿ = E[σ⁽ⁿ⁾(rg+b)]/√n!``
  smooth and even in r. Below the radius ``r₀ = ε^{1/8}`` (0.011 in float64) ``A_n`` is its
  Taylor series in ``r² − r₀²`` about ``r₀``, whose derivatives in ``r²`` the heat equation
  gives from the coefficients at ``r₀`` (``∂A_n/∂(r²) = ½√((n+1)(n+2)) A_{n+2}``); three
  terms leave an error ``O(r₀⁸) = O(ε)``, and the rounding noise of the derivatives is at
  most ``ε/r₀`` (gradients) and ``ε/r₀²`` (Hessians), i.e. 2e-14 and 2e-12. Above ``r₀``
  the series is the plain ρ-form, bit for bit.

  The coefficients' derivatives in ``(|w|, b)`` are the quadrature sums of σ's derivatives,
  ``∂_r^p ∂_b^q α_n = Σ_j σ^{(p+q)}(r g_j + b) g_j^p T_nj`` (docs/theory.md §3.A), with σ⁽ᵏ⁾ in
  closed form (:meth:`~landscape.model.activations.Activation.derivatives`): one grid pass
  per derivative order, after which gradients, Hessian-vector products and JVPs cost no grid
  work (:class:`_Coefficients`); autograd through ``σ`` on the grid is the reference.

  On CPU float64 the series and all its derivatives run as fused one-pass loops
  (:mod:`landscape.model.fused_series`, numba); the torch form (:class:`_MehlerSeries`) is
  the reference, taken on other devices and dtypes, under ``torch.func`` transforms and
  inside ``fused_series.reference_kernels()`` (which also selects the coefficients' reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .activations import Activation
from .fused_series import closed_derivatives_apply, contract_torch, derivative_coefficients, fused_applies, fused_mehler_series, series_torch, wrapped

__all__ = ["CLOSED_FORMS", "HermiteQuadrature", "erf_kernel", "gaussian_kernel", "has_closed_form", "relu_kernel"]

# Taylor terms of the coefficients below the radius r₀ = ε^{1/8} (HermiteQuadrature._scaled_coefficients).
_SMALL_RADIUS_TERMS = 3


def erf_kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Closed-form erf kernel, overflow-free and with finite derivatives for every finite weight.

    With ``s = √2 u/√(1+2|u|²)`` (so ``|s|² = 1 − e``, ``e = 1/(1+2|u|²)``) the kernel is
    ``(2/π) arcsin(s_u·s_v) = (2/π) atan2(x, √(1 − x²))``, ``x = s_u·s_v``, and
    ``1 − x² = e_u + e_v − e_u e_v + G`` with ``G = |s_u|²|s_v|² − x² ≥ 0`` the Gram
    determinant: no cancellation near ``x = ±1`` (coincident or antipodal particles at large
    |w|), and ``s`` is formed from ``u / max(1, max_i |u_i|)``, so ``|u|²`` never overflows.
    At |w| → ∞ the value tends to the sign kernel ``(2/π) arcsin(û·v̂)``.

    Args:
        u: tensor of shape (M1, d).
        v: tensor of shape (M2, d).

    Returns:
        tensor of shape (M1, M2) with ``E[erf(u_i·x) erf(v_j·x)]``.
    """
    su, eu = _erf_scaled(u)
    sv, ev = _erf_scaled(v)
    x = su @ sv.T
    gram = (su * su).sum(-1)[:, None] * (sv * sv).sum(-1)[None, :] - x * x
    e = eu[:, None] + ev[None, :] * (1.0 - eu[:, None])
    # G ≥ 0 exactly; it can round below −e/2 only where e < ε (|w| ≳ 1e8, x within ε of ±1):
    # there G is rounding noise, and e alone is the value (to rounding).
    one_minus_x2 = torch.where(e + gram > 0.5 * e, e + gram, e)
    cos = torch.sqrt(torch.clamp(one_minus_x2, min=torch.finfo(u.dtype).tiny))
    return (2.0 / math.pi) * torch.atan2(x, cos)


def _erf_scaled(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``s = √2 u/√(1+2|u|²)`` and ``e = 1/(1+2|u|²)`` without overflow: shapes (M, d), (M,).

    The rows are divided by ``m = max(1, max_i |u_i|)`` first (``|u/m|² ≤ d``). ``m`` is
    detached: the formulas are identities in ``m``, so its derivative contributes nothing.
    """
    m = torch.clamp(u.detach().abs().amax(-1, keepdim=True), min=1.0)
    scaled = u / m
    inv_m2 = m[:, 0] ** -2
    denom = inv_m2 + 2.0 * (scaled * scaled).sum(-1)
    return math.sqrt(2.0) * scaled / torch.sqrt(denom)[:, None], inv_m2 / denom


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


#: the activations whose kernel has a closed form (no bias, both sides the same σ).
CLOSED_FORMS = ("erf", "relu")


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

        Their derivatives in ``(r, b)`` of every order are the trapezoid sums of ``σ⁽ᵏ⁾``
        (:class:`_Coefficients`): one grid pass per order, shared by all later products, so
        reverse-over-reverse and forward-over-reverse products cost no grid work at all. Inside
        ``fused_series.reference_kernels()`` or ``torch.func`` transforms: autograd through ``σ``
        on the grid (the reference).

        Args:
            act: the activation σ.
            radius: tensor of shape (M,), ``|w_i|`` (without the bias).
            bias: tensor of shape (M,) or None.

        Returns:
            tensor of shape (M, order+1).
        """
        table = torch.as_tensor(self._table, dtype=radius.dtype, device=radius.device)
        if closed_derivatives_apply(radius, *(() if bias is None else (bias,))):
            ahead = int(torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (radius, bias)))
            return _Coefficients.apply(radius, bias, _CoefficientJet(act, table, radius, bias), 0, 0, ahead)
        return act(_grid(table, radius, bias)) @ table[1:].T

    def kernel(
        self,
        act1: Activation,
        u: torch.Tensor,
        b1: torch.Tensor | None,
        act2: Activation,
        v: torch.Tensor,
        b2: torch.Tensor | None,
    ) -> torch.Tensor:
        """``E[σ₁(u_i·x + b1_i) σ₂(v_j·x + b2_j)]``, shape (M1, M2).

        The series runs in ``t = u·v/(r̄_u r̄_v)`` with ``r̄ = max(|w|, r₀)`` and coefficients
        ``r̄ⁿ Aₙ(|w|)`` (module docstring), so it is smooth in ``u``, ``v`` also at ``w = 0``.
        """
        ru, alpha = self._scaled_coefficients(act1, u, b1)
        same = v is u and b2 is b1 and act2 is act1  # the student–student kernel: one set of coefficients
        rv, beta = (ru, alpha) if same else self._scaled_coefficients(act2, v, b2)
        t = (u @ v.T) / (ru[:, None] * rv[None, :])
        return mehler_series(t, alpha, beta)

    def _scaled_coefficients(self, act: Activation, w: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``r̄ = max(|w|, r₀)`` and ``r̄ⁿ Aₙ(|w|)``: shapes (M,), (M, order+1).

        ``Aₙ(r) = αₙ(r)/rⁿ`` is smooth and even in ``r``, and solves the heat equation
        ``∂Aₙ/∂(r²) = ½ √((n+1)(n+2)) A_{n+2}`` (Stein: ``Aₙ(r) = E[σ⁽ⁿ⁾(rg+b)]/√n!``), so below
        ``r₀`` it is the Taylor series in ``r² − r₀²`` about ``r₀``:
        ``r₀ⁿ Aₙ(r) = Σ_k sᵏ/k! · √((n+2k)!/n!) · α_{n+2k}(r₀)``, ``s = (r² − r₀²)/(2r₀²) ∈ [−½, 0]``.
        Above ``r₀``, ``s = 0`` exactly and the coefficients are the plain ``αₙ(|w|)``.
        """
        r0_sq = torch.finfo(w.dtype).eps ** (1.0 / 4.0)
        r_sq = (w * w).sum(-1)
        rbar_sq = torch.clamp(r_sq, min=r0_sq)
        s = (r_sq - rbar_sq) / (2.0 * rbar_sq)
        alpha = self.coefficients(act, torch.sqrt(rbar_sq), bias)
        n = torch.arange(alpha.shape[1], dtype=w.dtype, device=w.device)
        out, growth, power = alpha, torch.ones_like(n), torch.ones_like(s)
        for k in range(1, _SMALL_RADIUS_TERMS + 1):
            growth = growth * torch.sqrt((n + 2 * k - 1) * (n + 2 * k))
            power = power * s / k
            shifted = torch.nn.functional.pad(alpha[:, 2 * k :], (0, min(2 * k, alpha.shape[1])))
            out = out + power[:, None] * growth * shifted
        return torch.sqrt(rbar_sq), out

    def tail(self, act: Activation, radius: torch.Tensor, bias: torch.Tensor | None, terms: int = 8) -> torch.Tensor:
        """Root-sum-square of the last ``terms`` coefficients, per neuron: shape (M,).

        The truncation error of κ at |ρ| ≤ 1 is of the order of the product of two tails.
        """
        coeffs = self.coefficients(act, radius, bias)
        return torch.linalg.vector_norm(coeffs[:, -terms:], dim=-1)


def _grid(table: torch.Tensor, radius: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The quadrature arguments ``z_ij = r_i g_j + b_i``: shape (M, J) (``table[0]`` holds the nodes ``g``)."""
    z = radius[:, None] * table[0][None, :]
    if bias is not None:
        z = z + bias[:, None]
    return z


class _CoefficientJet:
    r"""The partial derivatives ``∂_r^p ∂_b^q α(r, b)`` of the discrete coefficients, computed one total order at a time and kept.

    With ``α_in = Σ_j σ(r_i g_j + b_i) T_nj`` (trapezoid weights and Hermite functions in
    ``T``), ``∂_r^p ∂_b^q α_in = Σ_j σ^{(p+q)}(z_ij) g_j^p T_nj``: the exact derivatives of the
    quadrature (so equal to autograd's to rounding), one evaluation of σ's derivatives
    (:meth:`Activation.derivatives`) and one matrix product per order. Without a bias only
    ``q = 0`` is formed. Values are plain tensors of shape (M, T+1), without history.
    """

    def __init__(self, act: Activation, table: torch.Tensor, radius: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.act, self.table = act, table
        self.radius, self.bias = radius.detach(), None if bias is None else bias.detach()
        self.entries: dict[tuple[int, int], torch.Tensor] = {}
        self.top = -1

    def get(self, p: int, q: int, ahead: int) -> torch.Tensor:
        """``∂_r^p ∂_b^q α``, shape (M, T+1), making sure that ``ahead`` further orders are there too (one grid pass for all missing)."""
        if p + q + ahead > self.top:
            self._compute(p + q + ahead)
        return self.entries[(p, q)]

    def _compute(self, top: int) -> None:
        nodes, weights = self.table[0], self.table[1:].T
        lowest = self.top + 1
        derivs = self.act.derivatives(_grid(self.table, self.radius, self.bias), top, lowest)
        m = self.radius.shape[0]
        for k, deriv in enumerate(derivs, start=lowest):
            if self.bias is None:
                self.entries[(k, 0)] = (deriv * nodes**k if k else deriv) @ weights
                continue
            rows = deriv.new_empty((k + 1, m, nodes.shape[0]))
            for p in range(k + 1):
                torch.mul(deriv, nodes**p, out=rows[p])
            for p, value in enumerate((rows.view(-1, nodes.shape[0]) @ weights).split(m)):
                self.entries[(p, k - p)] = value
        self.top = top


class _Coefficients(torch.autograd.Function):
    """``(r, b) ↦ ∂_r^p ∂_b^q α(r, b)`` (shape (M, T+1)), with derivatives of every order from the same :class:`_CoefficientJet`.

    Backward: ``ḡ ↦ (Σ_n ḡ_n ∂_r^{p+1}∂_b^q α_n, Σ_n ḡ_n ∂_r^p ∂_b^{q+1} α_n)``; forward mode:
    ``(dr, db) ↦ dr ∂_r^{p+1}∂_b^q α + db ∂_r^p ∂_b^{q+1} α``, both again through this Function,
    so double backward and forward-over-reverse are exact and cost one grid pass per new order
    (a forward whose inputs require gradients computes the first order with the values, a
    backward that builds a graph the next order with its own). ``ahead``: further orders
    made sure of (:meth:`_CoefficientJet.get`).
    """

    @staticmethod
    def forward(radius, bias, jet, p, q, ahead):
        return jet.get(p, q, ahead).clone()  # a fresh tensor: autograd sets the output's grad_fn in place

    @staticmethod
    def setup_context(ctx, inputs, output):
        radius, bias, jet, p, q, _ = inputs
        ctx.jet, ctx.p, ctx.q = jet, p, q
        ctx.save_for_backward(radius, bias)
        ctx.save_for_forward(radius, bias)

    @staticmethod
    def backward(ctx, grad):
        radius, bias = ctx.saved_tensors
        ahead = int(torch.is_grad_enabled())
        g_r = g_b = None
        if ctx.needs_input_grad[0]:
            g_r = (grad * _Coefficients.apply(radius, bias, ctx.jet, ctx.p + 1, ctx.q, ahead)).sum(-1)
        if bias is not None and ctx.needs_input_grad[1]:
            g_b = (grad * _Coefficients.apply(radius, bias, ctx.jet, ctx.p, ctx.q + 1, ahead)).sum(-1)
        return g_r, g_b, None, None, None, None

    @staticmethod
    def jvp(ctx, d_r, d_b, *_):
        radius, bias = ctx.saved_tensors
        out = torch.zeros_like(ctx.jet.get(ctx.p, ctx.q, 0))
        if d_r is not None:
            out = out + d_r[:, None] * _Coefficients.apply(radius, bias, ctx.jet, ctx.p + 1, ctx.q, 0)
        if d_b is not None and bias is not None:
            out = out + d_b[:, None] * _Coefficients.apply(radius, bias, ctx.jet, ctx.p, ctx.q + 1, 0)
        return out


class _MehlerSeries(torch.autograd.Function):
    """The reference path: ``κ = Σ_n ρ^n α_n β_nᵀ`` with derivatives in plain torch, O(M1·M2) stored.

    Autograd through the Horner loop saves every partial sum (T matrices of M1×M2: 128 MiB
    at M = 500, T = 64). Here the forward saves only its inputs; the backward and the
    forward-mode rule are again Mehler series (in ``ρ`` for ``∂κ/∂ρ``) or one pass per
    order over running powers ``ρ^n`` (for ``∂κ/∂α``, ``∂κ/∂β``), written in differentiable
    torch operations (:func:`~landscape.model.fused_series.series_torch`,
    :func:`~landscape.model.fused_series.contract_torch`), so second derivatives
    (reverse-over-reverse, forward-over-reverse) and ``torch.func`` transforms apply.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(rho, alpha, beta):
        return series_torch(rho, alpha[None], beta[None])

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
            g_rho = grad * _reference_series(rho, derivative_coefficients(alpha), beta[:, 1:])
        if need_alpha or need_beta:
            g_alpha, g_beta = contract_torch(grad, rho, alpha[None], beta[None], need_alpha, need_beta)
            g_alpha, g_beta = (g_alpha[0] if need_alpha else None), (g_beta[0] if need_beta else None)
        return g_rho, g_alpha, g_beta

    @staticmethod
    def jvp(ctx, d_rho, d_alpha, d_beta):
        rho, alpha, beta = ctx.saved_tensors
        out = torch.zeros_like(rho)
        if d_rho is not None:
            out = out + d_rho * _reference_series(rho, derivative_coefficients(alpha), beta[:, 1:])
        if d_alpha is not None:
            out = out + _reference_series(rho, d_alpha, beta)
        if d_beta is not None:
            out = out + _reference_series(rho, alpha, d_beta)
        return out


def mehler_series(rho: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``κ_ij = Σ_{n=0}^{T} ρ_ij^n α_in β_jn``, differentiable with O(M1·M2) stored memory.

    CPU float64 tensors outside ``torch.func`` transforms take the fused numba path
    (:mod:`landscape.model.fused_series`, derivatives of every order in one pass each);
    anything else, or any call inside ``fused_series.reference_kernels()``, the torch
    reference :class:`_MehlerSeries`. The two agree to rounding (tests/model/test_fused_series.py).

    Args:
        rho: tensor of shape (M1, M2), the cosines.
        alpha: tensor of shape (M1, T+1); beta: tensor of shape (M2, T+1).

    Returns:
        tensor of shape (M1, M2); without gradients it is the plain Horner evaluation.
    """
    if alpha.shape[1] >= 2 and fused_applies(rho, alpha, beta):
        return fused_mehler_series(rho, alpha, beta)
    return _reference_series(rho, alpha, beta)


def _reference_series(rho: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """:func:`mehler_series` by the torch reference path (shapes as there)."""
    if alpha.shape[1] < 2:
        return alpha[:, :1] * beta[:, 0][None, :]
    if not torch.is_grad_enabled() or not any(t.requires_grad for t in (rho, alpha, beta)):
        if not wrapped(rho, alpha, beta):
            return series_torch(rho, alpha[None], beta[None])
    return _MehlerSeries.apply(rho, alpha, beta)


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
    if has_closed_form(act1, act2, biased=b1 is not None or b2 is not None):
        return erf_kernel(u, v) if act1.name == "erf" else relu_kernel(u, v)
    return quadrature.kernel(act1, u, b1, act2, v, b2)


def has_closed_form(act1: Activation, act2: Activation, biased: bool) -> bool:
    """Whether :func:`gaussian_kernel` takes a closed form for this pair (else the Mehler series)."""
    return not biased and act1.name == act2.name and act1.name in CLOSED_FORMS
