r"""Mehler-series kernels and the derivatives the particle flow needs, in closed form (numba).

For a σ without a closed-form kernel (sigmoid, tanh, gelu, or two different activations), no
bias, :meth:`~landscape.model.kernels.HermiteQuadrature.kernel` is the series
(docs/theory.md §3.A)

.. math:: κ(u, v) = Σ_{n=0}^{T} t^n a_n(q_u) b_n(q_v), \quad t = (u·v) ν(q_u) ν(q_v),
          \quad q = |w|², \quad ν(q) = 1/\max(\sqrt q, r₀),

with ``a_n(q) = α_n(√q)`` above the radius ``r₀ = ε^{1/8}`` and its Taylor series in
``q − r₀²`` below (``kernels.py``, module docstring). Everything depends on ``u`` through ``q_u``
and ``u·v`` only, so with ``λ = ν'/ν`` (``−1/(2q)`` above ``r₀``, 0 below), primes
derivatives in ``q`` and the series

``S₀ = Σ tⁿ a_n b_n`` (= κ), ``S₁ = ∂_t S₀``, ``S₂ = ∂_t² S₀``, ``S_a = Σ tⁿ a'_n b_n``,
``S_{1a} = ∂_t S_a``, ``S_{1b} = Σ n tⁿ⁻¹ a_n b'_n``, ``S_{aa} = Σ tⁿ a''_n b_n``, ``S_{ab} = Σ tⁿ a'_n b'_n``:

* ``∇_u κ = G v + E u`` with ``G = S₁ ν_u ν_v`` and ``E = 2(S₁ t λ_u + S_a)``;
* along ``(du, dv)``, with ``q̇_u = 2u·du``, ``q̇_v = 2v·dv``, ``ẋ = du·v + u·dv``:
  ``ṫ = t(λ_u q̇_u + λ_v q̇_v) + ν_u ν_v ẋ``, ``Ṡ₁ = S₂ ṫ + S_{1a} q̇_u + S_{1b} q̇_v``,
  ``Ṡ_a = S_{1a} ṫ + S_{aa} q̇_u + S_{ab} q̇_v``, ``Ġ = ν_u ν_v (Ṡ₁ + S₁(λ_u q̇_u + λ_v q̇_v))``,
  ``Ė = 2(Ṡ₁ t λ_u + S₁ ṫ λ_u + S₁ t λ'_u q̇_u + Ṡ_a)``, and ``d(∇_u κ) = Ġ v + G dv + Ė u + E du``.

Every series of a pair comes from one Horner pass over the orders (:func:`mehler_tables`;
``S₁``, ``S₂`` by Horner's rule for the derivatives of a polynomial), once per state; the
gradients, directional derivatives and Hessian products are then elementwise products with
these tables and matrix products (:func:`pair_gradient`, :func:`pair_directional`,
:func:`pair_hessian_product`), so a Jacobian-vector product of the flow does no series work; the
Hessian products, linear in ``(q̇_u, q̇_v, ẋ)``, have their coefficient matrices for the flow's
fixed weights formed once per state too (:func:`pair_hessian_prepare`).

:func:`radial_jet` gives ``ν, λ, λ'`` and ``a, a', a''`` per neuron from the quadrature's
coefficient derivatives (``_CoefficientJet``: the exact derivatives of the discrete rule);
the pair functions dispatch to the closed forms of :mod:`.kernel_derivatives` for ``kind``
:data:`~.kernel_derivatives.ERF` / :data:`~.kernel_derivatives.RELU` and to the tables for
:data:`MEHLER`. Tested against torch autograd of ``HermiteQuadrature.kernel``
(tests/model/test_series_derivatives.py) and, through the flow, against the reference engine
(tests/dynamics/test_fast_field.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit

from .activations import Activation
from .kernel_derivatives import kernel_directional, kernel_gradient, kernel_hessian_product, kernel_matrix
from .kernels import _SMALL_RADIUS_TERMS, HermiteQuadrature, _CoefficientJet

__all__ = [
    "MEHLER",
    "VALUES",
    "FIELD",
    "JVP",
    "radial_jet",
    "mehler_tables",
    "pair_tables",
    "pair_matrix",
    "pair_gradient",
    "pair_directional",
    "pair_hessian_prepare",
    "pair_hessian_product",
    "no_preparation",
]

#: kernel id (``kind``) of the Mehler series (after :data:`~.kernel_derivatives.ERF`, :data:`~.kernel_derivatives.RELU`).
MEHLER = 2
#: table levels: ``κ`` only; ``κ, G, E`` (the field); all ten tables (Jacobian-vector products).
VALUES, FIELD, JVP = 0, 1, 2
_TABLES = (1, 3, 10)


def radial_jet(quadrature: HermiteQuadrature, act: Activation, w: np.ndarray, derivatives: int) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron, ``(ν, λ, λ')`` and ``∂_q^p a_n(q)`` at ``q = |w_i|²`` (module docstring).

    Args:
        quadrature: the Mehler rule (order ``T``).
        act: the activation σ (no bias).
        w: array of shape (M, d).
        derivatives: highest ``p`` (0, 1 or 2).

    Returns:
        ``rows`` of shape (3, M) and ``coef`` of shape (derivatives+1, M, T+1), float64.
    """
    r0_sq = float(np.finfo(np.float64).eps) ** 0.25
    q = np.einsum("ij,ij->i", w, w)
    small = q < r0_sq
    qbar = np.maximum(q, r0_sq)
    rbar = np.sqrt(qbar)
    table = torch.as_tensor(quadrature._table, dtype=torch.float64)
    jet = _CoefficientJet(act, table, torch.from_numpy(rbar), None)
    alpha = [jet.get(p, 0, derivatives - p).numpy() for p in range(derivatives + 1)]
    rows = np.zeros((3, q.size))
    rows[0] = 1.0 / rbar
    rows[1] = np.where(small, 0.0, -0.5 / qbar)
    rows[2] = np.where(small, 0.0, 0.5 / (qbar * qbar))
    coef = np.empty((derivatives + 1, q.size, alpha[0].shape[1]))
    coef[0] = alpha[0]
    r = rbar[:, None]
    if derivatives >= 1:
        coef[1] = alpha[1] / (2.0 * r)
    if derivatives >= 2:
        coef[2] = (alpha[2] - alpha[1] / r) / (4.0 * r * r)
    if small.any():
        coef[:, small] = _small_radius(alpha[0][small], q[small], r0_sq, derivatives)
    return rows, coef


def _small_radius(alpha0: np.ndarray, q: np.ndarray, r0_sq: float, derivatives: int) -> np.ndarray:
    """``∂_q^p a_n(q)`` below ``r₀`` from the coefficients at ``r₀`` (``alpha0`` (S, T+1), ``q`` (S,)): shape (derivatives+1, S, T+1).

    ``a_n = Σ_k sᵏ/k! √((n+2k)!/n!) α_{n+2k}(r₀)``, ``s = (q − r₀²)/(2r₀²)`` (``HermiteQuadrature._scaled_coefficients``).
    """
    n = np.arange(alpha0.shape[1], dtype=np.float64)
    s = (q - r0_sq) / (2.0 * r0_sq)
    ds = 1.0 / (2.0 * r0_sq)
    out = np.zeros((derivatives + 1,) + alpha0.shape)
    growth = np.ones_like(n)
    for k in range(_SMALL_RADIUS_TERMS + 1):
        if k:
            growth = growth * np.sqrt((n + 2 * k - 1) * (n + 2 * k))
        shifted = np.zeros_like(alpha0)
        shifted[:, : max(alpha0.shape[1] - 2 * k, 0)] = alpha0[:, 2 * k :]
        term = growth * shifted
        for p in range(min(k, derivatives) + 1):
            out[p] += (s ** (k - p) / math.factorial(k - p) * ds**p)[:, None] * term
    return out


@njit(cache=True, fastmath=False, error_model="numpy")
def mehler_tables(x, rows_u, coef_u, rows_v, coef_vt, level, symmetric):
    """The pair tables of ``κ(u_i, v_j)`` (module docstring), one Horner pass over the orders per row.

    Args:
        x: (M1, M2), ``u_i·v_j``.
        rows_u: (3, M1), ``ν, λ, λ'`` of the ``u`` side; rows_v: (3, M2) of the ``v`` side.
        coef_u: (P, M1, N), ``a, a', a''`` (P ≥ 1, 2, 3 for the levels); coef_vt: (2, N, M2),
            ``b`` and ``b'`` transposed (``b'`` zeros where ``v`` is fixed).
        level: :data:`VALUES`, :data:`FIELD` or :data:`JVP`.
        symmetric: whether ``v`` is ``u`` (then ``S_{1b} = S_{1a}ᵀ``); otherwise ``v`` is held
            fixed (teacher neurons: ``b' = 0`` and ``dv = 0``) and ``S_{1b}`` is not formed (zeros).

    Returns:
        (1, 3 or 10, M1, M2): ``κ, G, E, t, S₁, S₂, S_{1a}, S_{1b}, S_{aa}, S_{ab}``.
    """
    m1, m2 = x.shape
    n_terms = coef_u.shape[2]
    tab = np.zeros((_TABLES[level], m1, m2))
    t = np.empty(m2)
    p0 = np.empty(m2)
    p1 = np.empty(m2)
    p2 = np.empty(m2)
    pa = np.empty(m2)
    pa1 = np.empty(m2)
    paa = np.empty(m2)
    pab = np.empty(m2)
    for i in range(m1):
        nu_i, lam_i = rows_u[0, i], rows_u[1, i]
        for j in range(m2):
            t[j] = x[i, j] * nu_i * rows_v[0, j]
        p0[:] = 0.0
        p1[:] = 0.0
        p2[:] = 0.0
        pa[:] = 0.0
        pa1[:] = 0.0
        paa[:] = 0.0
        pab[:] = 0.0
        for n in range(n_terms - 1, -1, -1):
            an = coef_u[0, i, n]
            bn = coef_vt[0, n]
            if level == VALUES:
                for j in range(m2):
                    p0[j] = p0[j] * t[j] + an * bn[j]
                continue
            aqn = coef_u[1, i, n]
            if level == FIELD:
                for j in range(m2):
                    tj, b = t[j], bn[j]
                    p1[j] = p1[j] * tj + p0[j]
                    p0[j] = p0[j] * tj + an * b
                    pa[j] = pa[j] * tj + aqn * b
                continue
            aqqn = coef_u[2, i, n]
            bqn = coef_vt[1, n]
            for j in range(m2):
                tj, b = t[j], bn[j]
                p2[j] = p2[j] * tj + p1[j]
                p1[j] = p1[j] * tj + p0[j]
                p0[j] = p0[j] * tj + an * b
                pa1[j] = pa1[j] * tj + pa[j]
                pa[j] = pa[j] * tj + aqn * b
                paa[j] = paa[j] * tj + aqqn * b
                pab[j] = pab[j] * tj + aqn * bqn[j]
        tab[0, i] = p0
        if level == VALUES:
            continue
        for j in range(m2):
            nn = nu_i * rows_v[0, j]
            tab[1, i, j] = p1[j] * nn
            tab[2, i, j] = 2.0 * (p1[j] * t[j] * lam_i + pa[j])
        if level == JVP:
            tab[3, i] = t
            tab[4, i] = p1
            tab[5, i] = 2.0 * p2
            tab[6, i] = pa1
            tab[8, i] = paa
            tab[9, i] = pab
    if level == JVP and symmetric:
        tab[7] = tab[6].T
    return tab


@njit(cache=True, fastmath=False, error_model="numpy")
def pair_tables(kind, u, rows_u, coef_u, v, rows_v, coef_vt, level, symmetric):
    """:func:`mehler_tables` of ``κ(u_i, v_j)`` (``u`` (M1, d), ``v`` (M2, d)) for ``kind`` :data:`MEHLER`, an empty (0, 0, 0) array for a closed form."""
    if kind != MEHLER:
        return np.zeros((0, 0, 0))
    return mehler_tables(u @ v.T, rows_u, coef_u, rows_v, coef_vt, level, symmetric)


@njit(cache=True, fastmath=False, error_model="numpy")
def pair_matrix(kind, u, v, tab):
    """``κ(u_i, v_j)``: (M1, M2) (``tab`` from :func:`mehler_tables` for :data:`MEHLER`)."""
    if kind == MEHLER:
        return tab[0].copy()
    return kernel_matrix(kind, u, v)


@njit(cache=True, fastmath=False, error_model="numpy")
def pair_gradient(kind, u, v, tab, weights):
    """``Σ_j W_ij ∇_u κ(u_i, v_j)``: ``u`` (M1, d), ``v`` (M2, d), ``weights`` (M1, M2) → (M1, d)."""
    if kind != MEHLER:
        return kernel_gradient(kind, u, v, weights)
    m1, m2 = weights.shape
    wg = np.empty((m1, m2))
    we = np.empty((m1, m2))
    for i in range(m1):
        for j in range(m2):
            wij = weights[i, j]
            wg[i, j] = wij * tab[1, i, j]
            we[i, j] = wij * tab[2, i, j]
    return _row_sums(we).reshape(-1, 1) * u + wg @ v


@njit(cache=True, fastmath=False, error_model="numpy")
def _row_sums(x):
    """``Σ_j x_ij`` (M1,) as a matrix-vector product (BLAS; a plain loop's sum cannot be vectorised without reassociation)."""
    return x @ np.ones(x.shape[1])


@njit(cache=True, fastmath=False, error_model="numpy")
def pair_directional(kind, u, v, tab, du):
    """``∇_u κ(u_i, v_j) · du_i``: ``u``, ``du`` (M1, d), ``v`` (M2, d) → (M1, M2)."""
    if kind != MEHLER:
        return kernel_directional(kind, u, v, du)
    out = du @ v.T
    m1, m2 = out.shape
    for i in range(m1):
        half = 0.0
        for c in range(u.shape[1]):
            half += u[i, c] * du[i, c]
        for j in range(m2):
            out[i, j] = tab[1, i, j] * out[i, j] + tab[2, i, j] * half
    return out


@njit(cache=True, fastmath=False, error_model="numpy")
def no_preparation():
    """The empty :func:`pair_hessian_prepare` result (closed forms, or no Jacobian-vector products)."""
    return np.zeros((0, 0, 0)), np.zeros((0, 0)), np.zeros((0, 0))


@njit(cache=True, fastmath=False, error_model="numpy")
def pair_hessian_prepare(kind, u, v, tab, rows_u, rows_v, weights):
    """What :func:`pair_hessian_product` needs for fixed ``weights``, once per state.

    ``Σ_j W_ij d(∇_u κ)`` is linear in ``q̇_u``, ``q̇_v`` and ``ẋ`` (module docstring):
    ``Σ_j W_ij Ġ_ij v_j = q̇_u,i (P_u v)_i + (P_v (q̇_v ⊙ v))_i + ((P_x ⊙ ẋ) v)_i`` and
    ``½ Σ_j W_ij Ė_ij = q̇_u,i Σ_j (W B_u)_ij + (W B_v q̇_v)_i + Σ_j (W B_x ⊙ ẋ)_ij``, with per pair
    ``A_u = S₂tλ_u + S_{1a} + S₁λ_u``, ``A_v = S₂tλ_v + S_{1b} + S₁λ_v``, ``A_x = S₂ν_uν_v``
    (``P = W ν_uν_v A``) and ``B_u = tλ_u(S₂tλ_u + 2S_{1a} + S₁λ_u) + S₁tλ'_u + S_{aa}``,
    ``B_v = tλ_u(S₂tλ_v + S_{1b}) + S₁λ_u tλ_v + S_{1a}tλ_v + S_{ab}``,
    ``B_x = ν_uν_v(S₂tλ_u + S₁λ_u + S_{1a})``.

    Args:
        kind: the kernel id (closed forms: :func:`no_preparation`).
        u: (M1, d); v: (M2, d); tab: :func:`mehler_tables` at :data:`JVP`;
        rows_u: (3, M1); rows_v: (3, M2); weights: (M1, M2).

    Returns:
        ``(mats, vecs, pv)``: ``mats`` (5, M1, M2) = ``P_v, P_x, 2W B_v, 2W B_x, W G``; ``vecs``
        (2, M1) = ``Σ_j W E``, ``2 Σ_j W B_u``; ``pv`` (M1, d) = ``P_u v``.
    """
    if kind != MEHLER:
        return no_preparation()
    m1, m2 = weights.shape
    mats = np.empty((5, m1, m2))
    p_u = np.empty((m1, m2))
    we = np.empty((m1, m2))
    wb = np.empty((m1, m2))
    for i in range(m1):
        nu_i, lam_i, lamq_i = rows_u[0, i], rows_u[1, i], rows_u[2, i]
        for j in range(m2):
            wij = weights[i, j]
            t, s1, s2 = tab[3, i, j], tab[4, i, j], tab[5, i, j]
            s1a, s1b, saa, sab = tab[6, i, j], tab[7, i, j], tab[8, i, j], tab[9, i, j]
            nn = nu_i * rows_v[0, j]
            wnn = wij * nn
            tl_u, tl_v = t * lam_i, t * rows_v[1, j]
            p_u[i, j] = wnn * (s2 * tl_u + s1a + s1 * lam_i)
            mats[0, i, j] = wnn * (s2 * tl_v + s1b + s1 * rows_v[1, j])
            mats[1, i, j] = wnn * s2 * nn
            mats[2, i, j] = 2.0 * wij * (tl_u * (s2 * tl_v + s1b) + s1 * lam_i * tl_v + s1a * tl_v + sab)
            mats[3, i, j] = 2.0 * wnn * (s2 * tl_u + s1 * lam_i + s1a)
            mats[4, i, j] = wij * tab[1, i, j]
            we[i, j] = wij * tab[2, i, j]
            wb[i, j] = 2.0 * wij * (tl_u * (s2 * tl_u + 2.0 * s1a + s1 * lam_i) + s1 * t * lamq_i + saa)
    vecs = np.empty((2, m1))
    vecs[0] = _row_sums(we)
    vecs[1] = _row_sums(wb)
    return mats, vecs, p_u @ v


@njit(cache=True, fastmath=False, error_model="numpy")
def pair_hessian_product(kind, u, v, prepared, weights, du, dv):
    """``Σ_j W_ij [∇_uu κ(u_i, v_j) du_i + ∇_vu κ(u_i, v_j) dv_j]`` → (M1, d): the derivative of
    :func:`pair_gradient` along ``(du, dv)`` (``u``, ``du`` (M1, d); ``v``, ``dv`` (M2, d); ``weights``
    (M1, M2); ``prepared`` from :func:`pair_hessian_prepare` with these weights)."""
    if kind != MEHLER:
        return kernel_hessian_product(kind, u, v, weights, du, dv)
    mats, vecs, p_u_v = prepared
    m1, m2 = weights.shape
    xd = du @ v.T + u @ dv.T
    qd_u = 2.0 * np.sum(u * du, axis=1)
    qd_v = 2.0 * np.sum(v * dv, axis=1)
    y = np.empty((m1, m2))
    z = np.empty((m1, m2))
    for i in range(m1):
        for j in range(m2):
            y[i, j] = mats[1, i, j] * xd[i, j] + mats[0, i, j] * qd_v[j]
            z[i, j] = mats[3, i, j] * xd[i, j]
    scale_u = vecs[1] * qd_u + mats[2] @ qd_v + _row_sums(z)
    out = vecs[0].reshape(-1, 1) * du + scale_u.reshape(-1, 1) * u + qd_u.reshape(-1, 1) * p_u_v
    return out + y @ v + mats[4] @ dv
