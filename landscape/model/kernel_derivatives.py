r"""Closed-form Gaussian kernels and their derivatives in fused float64 loops (numba).

The closed forms of :mod:`landscape.model.kernels` (docs/theory.md §3): ``erf`` and ``relu``
without a bias, ``κ(u, v) = E_x[σ(u·x) σ(v·x)]``, evaluated pair by pair with what the
particle flow (docs/theory.md §5–6) needs of them, each contracted at once so that no
``(M1, M2, d)`` array is formed:

* :func:`kernel_matrix`: ``K_ij = κ(u_i, v_j)``, shape (M1, M2);
* :func:`kernel_gradient`: ``Σ_j W_ij ∇_u κ(u_i, v_j)``, shape (M1, d);
* :func:`kernel_directional`: ``∇_u κ(u_i, v_j) · du_i``, shape (M1, M2);
* :func:`kernel_hessian_product`: ``Σ_j W_ij [∇_uu κ(u_i, v_j) du_i + ∇_vu κ(u_i, v_j) dv_j]``,
  the directional derivative of :func:`kernel_gradient` along ``(du, dv)``, shape (M1, d).

``kind`` is :data:`ERF` or :data:`RELU` (:data:`KERNEL_IDS` maps the activation names).

**erf.** With ``e = 1/(1+2|u|²)``, ``r = √(2e)`` and ``s = r u`` (``|s|² = 1 − e``), the
kernel is ``(2/π) atan2(x, c)``, ``x = s_u·s_v``, ``c = √(1 − x²)`` and
``1 − x² = e_u + e_v − e_u e_v + G`` (``G = |s_u|²|s_v|² − x²``), exactly as
:func:`~landscape.model.kernels.erf_kernel` forms it (rows divided by ``max(1, max_i |u_i|)``
first, so nothing overflows, and the same guards where ``e`` is below rounding). Then
``∇_u x = r_u (s_v − x s_u)``, ``d r_u = −r_u² s_u·du``, ``d s_u = r_u (du − s_u (s_u·du))`` and
``∇_u κ = (2/π) ∇_u x / c``, ``d(∇_u κ) = (2/π) [x dx ∇_u x / c³ + d(∇_u x) / c]``.

**relu.** With ``θ`` the angle between ``u`` and ``v``, ``v_⊥ = v − (u·v/|u|²) u`` and
``s = |u| |v_⊥| = √(|u|²|v|² − (u·v)²)``: ``κ = (s − (u·v) θ)/(2π) + u·v/2``,
``∇_u κ = [(π − θ) v + |v_⊥| û]/(2π)``,
``∇_uu κ = (|v_⊥|/|u|) (I − ûûᵀ + n nᵀ)/(2π)`` (``n = v_⊥/|v_⊥|``) and
``∇_vu κ = [(π − θ) I + sin θ cos θ (v̂v̂ᵀ − m mᵀ) + sin²θ (v̂ mᵀ + m v̂ᵀ)]/(2π)``
(``m`` the unit vector of ``u_⊥ = u − (u·v/|v|²) v``). ``s`` comes from the orthogonal
component, not from the cancelling ``|u|²|v|² − (u·v)²``, so it is 0 exactly for
coincident particles and accurate near them; where ``s² ≤ ε²|u|²|v|²`` (``u ∥ v``, or a zero
vector) every quantity takes its limit, ``θ = 0`` for ``u·v > 0`` else ``π``, ``s = 0``, as
:func:`~landscape.model.kernels.relu_kernel` and its autograd derivatives do (at ``u = 0``
the gradient is 0, the limit of a kink).

Compiled by numba (float64, no ``fastmath``, IEEE division as in torch: ``error_model="numpy"``,
cached in ``__pycache__``: about a minute of CPU once per checkout). Every form is tested against torch autograd of ``erf_kernel`` / ``relu_kernel``
(tests/model/test_kernel_derivatives.py).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "ERF",
    "RELU",
    "KERNEL_IDS",
    "kernel_matrix",
    "kernel_gradient",
    "kernel_directional",
    "kernel_hessian_product",
]

#: kernel ids (``kind``) of the closed forms.
ERF = 0
RELU = 1
#: activation name → kernel id.
KERNEL_IDS = {"erf": ERF, "relu": RELU}

_TWO_OVER_PI = 2.0 / math.pi
_INV_TWO_PI = 1.0 / (2.0 * math.pi)
_EPS = float(np.finfo(np.float64).eps)
_TINY = float(np.finfo(np.float64).tiny)


# ----------------------------------------------------------------------------- erf
@njit(cache=True, fastmath=False, error_model="numpy")
def _erf_rows(u):
    """Per row of ``u`` (M, d): ``s = √2 u/√(1+2|u|²)`` (M, d), ``e = 1/(1+2|u|²)``, ``r = √(2e)``, ``|s|²`` (M,) each.

    Rows are divided by ``max(1, max_i |u_i|)`` first (:func:`~landscape.model.kernels.erf_kernel`).
    """
    m, d = u.shape
    s = np.empty((m, d))
    e = np.empty(m)
    r = np.empty(m)
    ss = np.empty(m)
    for i in range(m):
        scale = 1.0
        for k in range(d):
            scale = max(scale, abs(u[i, k]))
        inv_m2 = scale**-2
        sq = 0.0
        for k in range(d):
            z = u[i, k] / scale
            sq += z * z
        denom = inv_m2 + 2.0 * sq
        root = math.sqrt(denom)
        e[i] = inv_m2 / denom
        r[i] = math.sqrt(2.0) / (scale * root)
        total = 0.0
        for k in range(d):
            s[i, k] = math.sqrt(2.0) * (u[i, k] / scale) / root
            total += s[i, k] * s[i, k]
        ss[i] = total
    return s, e, r, ss


@njit(cache=True, fastmath=False, error_model="numpy")
def _erf_pair(su, eu, ssu, sv, ev, ssv, i, j):
    """``(x, c, branch)`` of the pair ``(i, j)``: ``x = s_u·s_v``, ``c = √(1 − x²)`` as erf_kernel forms it.

    ``branch`` 0: ``1 − x² = e + G``; 1: ``G`` is rounding noise, ``1 − x² = e``; 2: clamped at tiny.
    """
    x = 0.0
    for k in range(su.shape[1]):
        x += su[i, k] * sv[j, k]
    gram = ssu[i] * ssv[j] - x * x
    e = eu[i] + ev[j] * (1.0 - eu[i])
    branch = 0
    one = e + gram
    if not one > 0.5 * e:
        one = e
        branch = 1
    if one < _TINY:
        one = _TINY
        branch = 2
    return x, math.sqrt(one), branch


@njit(cache=True, fastmath=False, error_model="numpy")
def _erf_matrix(u, v):
    su, eu, _, ssu = _erf_rows(u)
    sv, ev, _, ssv = _erf_rows(v)
    out = np.empty((u.shape[0], v.shape[0]))
    for i in range(u.shape[0]):
        for j in range(v.shape[0]):
            x, c, _ = _erf_pair(su, eu, ssu, sv, ev, ssv, i, j)
            out[i, j] = _TWO_OVER_PI * math.atan2(x, c)
    return out


@njit(cache=True, fastmath=False, error_model="numpy")
def _erf_gradient_factors(x, c, branch, eu, ev, ru):
    """``(f, g)`` with ``∇_u κ = f ∇_u x + g s_u``: ``(2/π)/c`` and 0 in the regular branch; where
    erf_kernel takes ``c² = e`` (or clamps it), the derivative of that expression (autograd's)."""
    if branch == 0:
        return _TWO_OVER_PI / c, 0.0
    norm = _TWO_OVER_PI / (x * x + c * c)
    if branch == 2:
        return norm * c, 0.0
    # c = √e: dc = de/(2c), de = −2 r_u e_u (1 − e_v) s_u·du
    return norm * c, norm * x * ru * eu * (1.0 - ev) / c


@njit(cache=True, fastmath=False, error_model="numpy")
def _erf_gradient(u, v, weights):
    su, eu, ru, ssu = _erf_rows(u)
    sv, ev, _, ssv = _erf_rows(v)
    m1, d = u.shape
    out = np.zeros((m1, d))
    for i in range(m1):
        for j in range(v.shape[0]):
            wij = weights[i, j]
            if wij == 0.0:
                continue
            x, c, branch = _erf_pair(su, eu, ssu, sv, ev, ssv, i, j)
            f, g = _erf_gradient_factors(x, c, branch, eu[i], ev[j], ru[i])
            fx = wij * f * ru[i]
            gs = wij * g
            for k in range(d):
                out[i, k] += fx * (sv[j, k] - x * su[i, k]) + gs * su[i, k]
    return out


@njit(cache=True, fastmath=False, error_model="numpy")
def _erf_directional(u, v, du):
    su, eu, ru, ssu = _erf_rows(u)
    sv, ev, _, ssv = _erf_rows(v)
    m1, d = u.shape
    out = np.empty((m1, v.shape[0]))
    for i in range(m1):
        for j in range(v.shape[0]):
            x, c, branch = _erf_pair(su, eu, ssu, sv, ev, ssv, i, j)
            f, g = _erf_gradient_factors(x, c, branch, eu[i], ev[j], ru[i])
            acc = 0.0
            for k in range(d):
                acc += (f * ru[i] * (sv[j, k] - x * su[i, k]) + g * su[i, k]) * du[i, k]
            out[i, j] = acc
    return out


@njit(cache=True, fastmath=False, error_model="numpy")
def _erf_hessian_product(u, v, weights, du, dv):
    su, eu, ru, ssu = _erf_rows(u)
    sv, ev, rv, ssv = _erf_rows(v)
    m1, d = u.shape
    out = np.zeros((m1, d))
    for i in range(m1):
        s_du = 0.0
        for k in range(d):
            s_du += su[i, k] * du[i, k]
        for j in range(v.shape[0]):
            wij = weights[i, j]
            if wij == 0.0:
                continue
            x, c, _ = _erf_pair(su, eu, ssu, sv, ev, ssv, i, j)
            sv_dv = 0.0
            dx = 0.0
            for k in range(d):
                sv_dv += sv[j, k] * dv[j, k]
            for k in range(d):
                dx += ru[i] * (sv[j, k] - x * su[i, k]) * du[i, k] + rv[j] * (su[i, k] - x * sv[j, k]) * dv[j, k]
            f1 = wij * _TWO_OVER_PI / c
            f2 = f1 * x * dx / (c * c)
            dr = -ru[i] * ru[i] * s_du
            for k in range(d):
                q = sv[j, k] - x * su[i, k]
                ds_u = ru[i] * (du[i, k] - su[i, k] * s_du)
                ds_v = rv[j] * (dv[j, k] - sv[j, k] * sv_dv)
                dq = ds_v - dx * su[i, k] - x * ds_u
                out[i, k] += f2 * ru[i] * q + f1 * (dr * q + ru[i] * dq)
    return out


# ---------------------------------------------------------------------------- relu
@njit(cache=True, fastmath=False, error_model="numpy")
def _relu_pair(u, v, i, j):
    """``(a, b, c, s, θ, limit)`` of the pair: ``|u|², u·v, |v|²``, ``s = |u||v_⊥|``, the angle, and
    whether the parallel limit applies (``s² ≤ ε²|u|²|v|²``; then ``s = 0``, ``θ ∈ {0, π}``)."""
    a = 0.0
    b = 0.0
    c = 0.0
    for k in range(u.shape[1]):
        a += u[i, k] * u[i, k]
        b += u[i, k] * v[j, k]
        c += v[j, k] * v[j, k]
    perp = 0.0
    if a > 0.0:
        t = b / a
        for k in range(u.shape[1]):
            z = v[j, k] - t * u[i, k]
            perp += z * z
    s_sq = a * perp
    if s_sq <= _EPS * _EPS * a * c:
        return a, b, c, 0.0, (0.0 if b > 0.0 else math.pi), True
    s = math.sqrt(s_sq)
    return a, b, c, s, math.atan2(s, b), False


@njit(cache=True, fastmath=False, error_model="numpy")
def _relu_matrix(u, v):
    out = np.empty((u.shape[0], v.shape[0]))
    for i in range(u.shape[0]):
        for j in range(v.shape[0]):
            _, b, _, s, theta, _ = _relu_pair(u, v, i, j)
            out[i, j] = (s - b * theta) * _INV_TWO_PI + 0.5 * b
    return out


@njit(cache=True, fastmath=False, error_model="numpy")
def _relu_gradient(u, v, weights):
    m1, d = u.shape
    out = np.zeros((m1, d))
    for i in range(m1):
        for j in range(v.shape[0]):
            wij = weights[i, j]
            if wij == 0.0:
                continue
            a, _, _, s, theta, _ = _relu_pair(u, v, i, j)
            fv = wij * (math.pi - theta) * _INV_TWO_PI
            fu = wij * s / a * _INV_TWO_PI if s > 0.0 else 0.0
            for k in range(d):
                out[i, k] += fv * v[j, k] + fu * u[i, k]
    return out


@njit(cache=True, fastmath=False, error_model="numpy")
def _relu_directional(u, v, du):
    m1, d = u.shape
    out = np.empty((m1, v.shape[0]))
    for i in range(m1):
        for j in range(v.shape[0]):
            a, _, _, s, theta, _ = _relu_pair(u, v, i, j)
            fv = (math.pi - theta) * _INV_TWO_PI
            fu = s / a * _INV_TWO_PI if s > 0.0 else 0.0
            acc = 0.0
            for k in range(d):
                acc += (fv * v[j, k] + fu * u[i, k]) * du[i, k]
            out[i, j] = acc
    return out


@njit(cache=True, fastmath=False, error_model="numpy")
def _relu_hessian_product(u, v, weights, du, dv):
    m1, d = u.shape
    out = np.zeros((m1, d))
    vperp = np.empty(d)
    uperp = np.empty(d)
    for i in range(m1):
        for j in range(v.shape[0]):
            wij = weights[i, j]
            if wij == 0.0:
                continue
            a, b, c, s, theta, limit = _relu_pair(u, v, i, j)
            lin = wij * (math.pi - theta) * _INV_TWO_PI
            if limit:
                for k in range(d):
                    out[i, k] += lin * dv[j, k]
                continue
            nu, nv = math.sqrt(a), math.sqrt(c)
            tu, tv = b / a, b / c
            vp_sq = 0.0
            up_sq = 0.0
            for k in range(d):
                vperp[k] = v[j, k] - tu * u[i, k]
                uperp[k] = u[i, k] - tv * v[j, k]
                vp_sq += vperp[k] * vperp[k]
                up_sq += uperp[k] * uperp[k]
            vp = math.sqrt(vp_sq)
            # |u_⊥| ≥ ε|u| here; it rounds to 0 only where its terms (× sin θ ≤ ε) vanish anyway
            up = math.sqrt(up_sq) if up_sq > 0.0 else 1.0
            # ∇_uu κ du = (|v_⊥|/|u|)(du − û(û·du) + n(n·du))/(2π)
            u_du = 0.0
            n_du = 0.0
            vh_dv = 0.0
            m_dv = 0.0
            for k in range(d):
                u_du += u[i, k] * du[i, k]
                n_du += vperp[k] * du[i, k]
                vh_dv += v[j, k] * dv[j, k]
                m_dv += uperp[k] * dv[j, k]
            u_du /= nu
            n_du /= vp
            vh_dv /= nv
            m_dv /= up
            f11 = wij * vp / nu * _INV_TWO_PI
            sin = s / (nu * nv)
            cos = b / (nu * nv)
            f_sc = wij * sin * cos * _INV_TWO_PI
            f_ss = wij * sin * sin * _INV_TWO_PI
            for k in range(d):
                uh = u[i, k] / nu
                n = vperp[k] / vp
                vh = v[j, k] / nv
                mk = uperp[k] / up
                out[i, k] += (
                    f11 * (du[i, k] - uh * u_du + n * n_du)
                    + lin * dv[j, k]
                    + f_sc * (vh * vh_dv - mk * m_dv)
                    + f_ss * (vh * m_dv + mk * vh_dv)
                )
    return out


# -------------------------------------------------------------------------- public
@njit(cache=True, fastmath=False, error_model="numpy")
def kernel_matrix(kind, u, v):
    """``κ(u_i, v_j)``: ``u`` (M1, d), ``v`` (M2, d) float64 → (M1, M2)."""
    if kind == ERF:
        return _erf_matrix(u, v)
    return _relu_matrix(u, v)


@njit(cache=True, fastmath=False, error_model="numpy")
def kernel_gradient(kind, u, v, weights):
    """``Σ_j W_ij ∇_u κ(u_i, v_j)``: ``u`` (M1, d), ``v`` (M2, d), ``weights`` (M1, M2) → (M1, d)."""
    if kind == ERF:
        return _erf_gradient(u, v, weights)
    return _relu_gradient(u, v, weights)


@njit(cache=True, fastmath=False, error_model="numpy")
def kernel_directional(kind, u, v, du):
    """``∇_u κ(u_i, v_j) · du_i``: ``u`` (M1, d), ``v`` (M2, d), ``du`` (M1, d) → (M1, M2)."""
    if kind == ERF:
        return _erf_directional(u, v, du)
    return _relu_directional(u, v, du)


@njit(cache=True, fastmath=False, error_model="numpy")
def kernel_hessian_product(kind, u, v, weights, du, dv):
    """``Σ_j W_ij [∇_uu κ(u_i, v_j) du_i + ∇_vu κ(u_i, v_j) dv_j]`` → (M1, d).

    The derivative of :func:`kernel_gradient` along ``(du, dv)``: ``u``, ``du`` (M1, d),
    ``v``, ``dv`` (M2, d), ``weights`` (M1, M2).
    """
    if kind == ERF:
        return _erf_hessian_product(u, v, weights, du, dv)
    return _relu_hessian_product(u, v, weights, du, dv)
