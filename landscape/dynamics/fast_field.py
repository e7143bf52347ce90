r"""The particle-flow field of :class:`~landscape.dynamics.flow.ParticleFlow` in closed form (numba).

For the exact Gaussian backend with a closed-form kernel (``erf`` or ``relu``, student and
teacher alike, no bias), at ``N = ∞`` (any η, birth–death rate α and ridge λ), the whole field
``f(y)`` of docs/theory.md §6, its diagnostics and its exact Jacobian-vector product are a
few fused kernel passes (:mod:`landscape.model.kernel_derivatives`) and ``k×k`` algebra, with
no autograd graph. :func:`unsupported` says where this does not apply; ``ParticleFlow`` then
takes its reference (autograd) path, against which ``tests/dynamics/test_fast_field.py``
checks this one to rounding.

**Energy and its gradient** (docs/theory.md §4–5). With ``A = p ⊙ a`` (M, k), ``K = κ(W, W)``,
``K° = κ(W, U°)`` (M, L), ``F = K° c°`` (M, k°), ``h = K A``: ``Σ_µµ = Aᵀ h`` (symmetrised),
``Σ_µ° = Aᵀ F``, ``Σ_λ = Σ_µµ + λI``. Writing ``dE = tr(G_mm dΣ_µµ) + tr(G_mtᵀ dΣ_µ°) (+ tr(G_Γᵀ dΓ))``:

* η = ∞: ``C = Σ_λ⁻¹ Σ_µ°``, ``E = L_∞ = ½[tr Σ_°° + τ² − tr(Σ_°µ C)]``, ``G_mm = ½ C Cᵀ``, ``G_mt = −C``;
* finite η: ``A_∞ = Σ_µ°Σ_°µ``, ``P = Γᵀ Σ_λ Γ``,
  ``E = ½[tr Σ_°° + τ² − 2 tr(Σ_°µ Γ Σ_µ°) + tr(P A_∞)]``, ``G_mm = ½ Γ A_∞ Γᵀ``,
  ``G_mt = (P − Γ − Γᵀ) Σ_µ°``, ``G_Γ = Σ_λ Γ A_∞ − A_∞``.

Then ``g_A = 2 h G_mm + F G_mtᵀ`` (``∂E/∂A``), ``∂E/∂a_i = p_i g_{A,i}``, ``∂E/∂p_i = a_i·g_{A,i}``
(= ``G(θ_i)``, at η = ∞ the projection ``−a_iᵀ C ρ_µ(w_i)``) and
``∂E/∂w_i = Σ_j S_ij ∇_u κ(w_i, w_j) + Σ_l T_il ∇_u κ(w_i, u°_l)`` with ``S = 2 A G_mm Aᵀ``,
``T = A G_mt c°ᵀ``. :class:`~landscape.dynamics.flow.ParticleFlow` turns them into the field
exactly as its ``_assemble`` does (velocities over ``p``, the WFR rate, ``−η G_Γ``, ``dD/dt``).

**Jacobian-vector product** (docs/theory.md §6.C): the forward-mode derivative of every line
above along ``(ȧ, ẇ, ṗ, Γ̇)`` — ``K̇ = D + Dᵀ`` with ``D_ij = ∇_u κ(w_i, w_j)·ẇ_i``,
``Ċ = Σ_λ⁻¹(Σ̇_µ° − Σ̇_µµ C)``, and ``∂Ė/∂w`` adds the kernel's Hessian products
(:func:`~landscape.model.kernel_derivatives.kernel_hessian_product`) to the gradients with
``Ṡ``, ``Ṫ`` — then through the assembly (``ṽ = ḣ/p − v ṗ/p``, the mean-centred first
variation, the rates).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit

from ..landscape import AttentionLandscape
from ..model.kernel_derivatives import KERNEL_IDS, kernel_directional, kernel_gradient, kernel_hessian_product, kernel_matrix
from ..model.kernels import has_closed_form

__all__ = ["FastField", "FastEvaluation", "unsupported"]


def unsupported(landscape: AttentionLandscape) -> str | None:
    """Why the closed-form field does not apply to ``landscape`` (one line), or None when it does."""
    exp = landscape.expectation
    if exp.method != "exact":
        return f"the {exp.method} backend has no closed-form field"
    if landscape.finite_prompt:
        return "finite prompt length N (the fourth moments are sampled)"
    if exp.dtype != torch.float64 or exp.device.type != "cpu":
        return f"closed forms run in float64 on the CPU, the landscape is {exp.dtype} on {exp.device}"
    student, teacher = exp.activation, landscape.teacher.activation
    if not (has_closed_form(student, student, exp.bias) and has_closed_form(student, teacher, exp.bias)):
        return f"no closed-form kernel for student {student.name}, teacher {teacher.name}, bias {exp.bias}"
    return None


class FastEvaluation:
    """One closed-form evaluation: the field as an array and the diagnostics ``FieldValue`` needs.

    Attributes:
        dy: array of the state's shape, ``f(y)``.
        energy, loss, grad_sq: ``E``, ``L_N(µ)``, ``Σ_i p_i |∇_θ δE/δµ(θ_i)|²``.
        first_variation: array (M,), ``δE/δµ(θ_i)``.
        sigma_min, sigma_max: extreme eigenvalues of ``Σ_µµ``.
        saved: the intermediates :meth:`FastField.jvp` needs (:meth:`FastField.linearize`), or None.
    """

    __slots__ = ("dy", "energy", "loss", "grad_sq", "first_variation", "sigma_min", "sigma_max", "saved")

    def __init__(self, out: tuple, saved: tuple | None = None) -> None:
        self.dy, self.energy, self.loss, self.grad_sq, self.first_variation, self.sigma_min, self.sigma_max = out
        self.saved = saved


class FastField:
    """The closed-form field of one problem and state layout.

    Args:
        landscape: a landscape for which :func:`unsupported` is None.
        m, k, d: particles, features and columns of ``w``; gamma: whether Γ is in the state.
        timescale_ratio: η (``math.inf``: Γ = Γ*); wfr_rate: α (0: fixed weights).

    Raises:
        ValueError: when :func:`unsupported` names a reason.
    """

    def __init__(self, landscape: AttentionLandscape, m: int, k: int, d: int, gamma: bool, timescale_ratio: float, wfr_rate: float):
        reason = unsupported(landscape)
        if reason is not None:
            raise ValueError(f"the closed-form field does not apply: {reason}.")
        teacher = landscape.teacher
        self._kind = KERNEL_IDS[landscape.expectation.activation.name]
        self._u = np.ascontiguousarray(teacher.u, dtype=np.float64)
        self._c = np.ascontiguousarray(teacher.c, dtype=np.float64)
        self._shape = (m, k, d, gamma)
        self._eta = 0.0 if math.isinf(timescale_ratio) else float(timescale_ratio)
        self._alpha = float(wfr_rate)
        self._ridge = float(landscape.ridge)
        self._base = float(torch.trace(landscape.expectation.sigma_tt)) + landscape.noise**2

    def evaluate(self, y: np.ndarray) -> FastEvaluation:
        """The field and its diagnostics at the flat state ``y`` (``Layout`` order, float64).

        Raises:
            numpy.linalg.LinAlgError: when ``Σ_µµ + λI`` is exactly singular.
        """
        m, k, d, gamma = self._shape
        return FastEvaluation(_field(self._kind, y, m, k, d, gamma, self._u, self._c, self._alpha, self._eta, self._ridge, self._base))

    def linearize(self, y: np.ndarray) -> FastEvaluation:
        """:meth:`evaluate` keeping what :meth:`jvp` needs.

        Raises:
            numpy.linalg.LinAlgError: when ``Σ_µµ + λI`` is exactly singular.
        """
        m, k, d, gamma = self._shape
        out = _forward(self._kind, y, m, k, d, gamma, self._u, self._c, self._alpha, self._eta, self._ridge, self._base)
        return FastEvaluation(out[:7], out[7])

    def energy(self, y: np.ndarray) -> float:
        """``E`` at the flat state ``y`` (``L_N`` at η = ∞, ``L(µ, Γ)`` otherwise)."""
        m, k, d, gamma = self._shape
        return _energy(self._kind, y, m, k, d, gamma, self._u, self._c, self._ridge, self._base)

    def evaluate_batch(self, ys: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The field of several states of this layout in one compiled loop (ensembles).

        Args:
            ys: array of shape (B, n), one flat state per row.
            members: bool array of shape (B,), the rows to evaluate.

        Returns:
            ``(dy, stats, singular)``: the fields, shape (B, n) (zeros where not evaluated);
            ``stats`` of shape (B, 5), columns ``E``, ``L_N``, ``Σ p|v|²``, ``λ_min``, ``λ_max``
            of ``Σ_µµ`` (NaN where not evaluated); ``singular`` bool (B,), where ``Σ_µµ + λI``
            could not be solved.
        """
        m, k, d, gamma = self._shape
        return _field_batch(self._kind, ys, members, m, k, d, gamma, self._u, self._c, self._alpha, self._eta, self._ridge, self._base)

    def jvp(self, evaluation: FastEvaluation, v: np.ndarray) -> np.ndarray:
        """``(∂f/∂y) v`` at the state of ``evaluation`` (from :meth:`linearize`; ``v``'s ``D`` entry is ignored); shape of ``v``."""
        m, k, d, gamma = self._shape
        return _jvp(self._kind, v, m, k, d, gamma, self._u, self._c, self._alpha, self._eta, evaluation.saved)


# ------------------------------------------------------------------- compiled parts
@njit(cache=True, fastmath=False, error_model="numpy")
def _unpack(y, m, k, d, gamma):
    """``a`` (M, k), ``w`` (M, d), ``p`` (M,), ``Γ`` (k, k; zeros when absent): copies of ``y``'s parts."""
    a = y[: m * k].copy().reshape(m, k)
    w = y[m * k : m * (k + d)].copy().reshape(m, d)
    p = y[m * (k + d) : m * (k + d + 1)].copy()
    g = np.zeros((k, k))
    if gamma:
        g[:, :] = y[m * (k + d + 1) : m * (k + d + 1) + k * k].reshape(k, k)
    return a, w, p, g


@njit(cache=True, fastmath=False, error_model="numpy")
def _solve(a, b):
    """``a⁻¹ b`` (C order); NaN where ``a`` or ``b`` is not finite (torch's answer; numba's LAPACK refuses them)."""
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return np.full(b.shape, np.nan)
    return np.ascontiguousarray(np.linalg.solve(a, b))


@njit(cache=True, fastmath=False, error_model="numpy")
def _eigvalsh(a):
    """Ascending eigenvalues of the symmetric ``a``; NaN where ``a`` is not finite."""
    if not np.all(np.isfinite(a)):
        return np.full(a.shape[0], np.nan)
    return np.linalg.eigvalsh(a)


@njit(cache=True, fastmath=False, error_model="numpy")
def _moments(kind, a, w, p, u, c):
    """``A`` (M, k), ``K`` (M, M), ``K°`` (M, L), ``F`` (M, k°), ``h`` (M, k), ``Σ_µµ`` (k, k), ``Σ_µ°`` (k, k°)."""
    big_a = a * p.reshape(-1, 1)
    kmat = kernel_matrix(kind, w, w)
    kt = kernel_matrix(kind, w, u)
    f = kt @ c
    h = kmat @ big_a
    at = big_a.T.copy()
    sig = at @ h
    sig = 0.5 * (sig + sig.T)
    smt = at @ f
    return big_a, kmat, kt, f, h, sig, smt


@njit(cache=True, fastmath=False, error_model="numpy")
def _objective(sig, smt, g, gamma, ridge, base):
    """``(E, L_N, Σ_λ, C, A_∞, P)`` from the moments (``A_∞``, ``P`` zeros at η = ∞)."""
    k = sig.shape[0]
    sig_r = sig + ridge * np.eye(k)
    cmat = _solve(sig_r, smt)
    loss = 0.5 * (base - np.sum(smt * cmat))
    a_inf = np.zeros((k, k))
    pmat = np.zeros((k, k))
    energy = loss
    if gamma:
        a_inf = smt @ smt.T
        pmat = g.T @ sig_r @ g
        cross = np.sum(smt * (g @ smt))
        energy = 0.5 * (base - 2.0 * cross + np.trace(pmat @ a_inf))
    return energy, loss, sig_r, cmat, a_inf, pmat


@njit(cache=True, fastmath=False, error_model="numpy")
def _energy(kind, y, m, k, d, gamma, u, c, ridge, base):
    a, w, p, g = _unpack(y, m, k, d, gamma)
    _, _, _, _, _, sig, smt = _moments(kind, a, w, p, u, c)
    return _objective(sig, smt, g, gamma, ridge, base)[0]


@njit(cache=True, fastmath=False, error_model="numpy")
def _moment_gradients(cmat, smt, g, sig_r, a_inf, pmat, gamma):
    """``(G_mm, G_mt, G_Γ)`` (module docstring; ``G_Γ`` zeros at η = ∞)."""
    if not gamma:
        return np.ascontiguousarray(0.5 * (cmat @ cmat.T)), np.ascontiguousarray(-cmat), np.zeros_like(g)
    g_mm = np.ascontiguousarray(0.5 * (g @ a_inf @ g.T))
    g_mt = np.ascontiguousarray((pmat - g - g.T) @ smt)
    return g_mm, g_mt, np.ascontiguousarray(sig_r @ g @ a_inf - a_inf)


@njit(cache=True, fastmath=False, error_model="numpy")
def _pack(m, k, d, gamma, va, vw, dp, dg, rate):
    """The flat state vector from its parts (``Layout.pack``)."""
    out = np.empty(m * (k + d + 1) + (k * k if gamma else 0) + 1)
    out[: m * k] = va.ravel()
    out[m * k : m * (k + d)] = vw.ravel()
    out[m * (k + d) : m * (k + d + 1)] = dp
    if gamma:
        out[m * (k + d + 1) : m * (k + d + 1) + k * k] = dg.ravel()
    out[-1] = rate
    return out


@njit(cache=True, fastmath=False, error_model="numpy")
def _field(kind, y, m, k, d, gamma, u, c, alpha, eta, ridge, base):
    """The field and its diagnostics without the saved intermediates (boxing them costs more than the arithmetic here)."""
    return _forward(kind, y, m, k, d, gamma, u, c, alpha, eta, ridge, base)[:7]


@njit(cache=True, fastmath=False, error_model="numpy")
def _field_batch(kind, ys, members, m, k, d, gamma, u, c, alpha, eta, ridge, base):
    """:func:`_field` of every row of ``ys`` in ``members`` (:meth:`FastField.evaluate_batch`)."""
    b = ys.shape[0]
    dy = np.zeros_like(ys)
    stats = np.full((b, 5), np.nan)
    singular = np.zeros(b, dtype=np.bool_)
    for i in range(b):
        if not members[i]:
            continue
        try:
            out = _field(kind, np.ascontiguousarray(ys[i]), m, k, d, gamma, u, c, alpha, eta, ridge, base)
        except Exception:  # noqa: BLE001 (numba catches only bare Exception: LAPACK's singular matrix)
            singular[i] = True
            continue
        dy[i] = out[0]
        stats[i, 0], stats[i, 1], stats[i, 2], stats[i, 3], stats[i, 4] = out[1], out[2], out[3], out[5], out[6]
    return dy, stats, singular


@njit(cache=True, fastmath=False, error_model="numpy")
def _forward(kind, y, m, k, d, gamma, u, c, alpha, eta, ridge, base):
    """``(f(y), E, L, Σ p|v|², δ, λ_min, λ_max, saved)``; ``saved`` is what :func:`_jvp` needs."""
    a, w, p, g = _unpack(y, m, k, d, gamma)
    big_a, kmat, kt, f, h, sig, smt = _moments(kind, a, w, p, u, c)
    energy, loss, sig_r, cmat, a_inf, pmat = _objective(sig, smt, g, gamma, ridge, base)
    g_mm, g_mt, g_g = _moment_gradients(cmat, smt, g, sig_r, a_inf, pmat, gamma)
    grad_a = 2.0 * (h @ g_mm) + f @ g_mt.T
    s = 2.0 * (big_a @ g_mm @ big_a.T)
    t = big_a @ g_mt @ c.T
    grad_w = kernel_gradient(kind, w, w, s) + kernel_gradient(kind, w, u, t)
    pc = p.reshape(-1, 1)
    vel = np.concatenate((pc * grad_a, grad_w), axis=1) / pc
    raw = np.sum(a * grad_a, axis=1)
    delta = raw - np.sum(p * raw) / np.sum(p)
    grad_sq = np.sum(p * np.sum(vel * vel, axis=1))
    rate = grad_sq
    dp = np.zeros(m)
    if alpha > 0:
        dp = -alpha * p * delta
        rate += alpha * np.sum(p * delta * delta)
    if gamma:
        rate += eta * np.sum(g_g * g_g)
    dy = _pack(m, k, d, gamma, -vel[:, :k], -vel[:, k:], dp, -eta * g_g, rate)
    eig = _eigvalsh(sig)
    saved = (a, w, p, g, big_a, kmat, f, h, sig_r, smt, cmat, a_inf, pmat, g_mm, g_mt, g_g, grad_a, s, t, vel, raw, delta)
    return dy, energy, loss, grad_sq, delta, eig[0], eig[-1], saved


@njit(cache=True, fastmath=False, error_model="numpy")
def _jvp(kind, v, m, k, d, gamma, u, c, alpha, eta, saved):
    a, w, p, g, big_a, kmat, f, h, sig_r, smt, cmat, a_inf, pmat, g_mm, g_mt, g_g, grad_a, s, t, vel, raw, delta = saved
    va, vw, vp, vg = _unpack(v, m, k, d, gamma)
    pc, vpc = p.reshape(-1, 1), vp.reshape(-1, 1)
    d_big_a = vpc * a + pc * va
    dmat = kernel_directional(kind, w, w, vw)
    d_f = kernel_directional(kind, w, u, vw) @ c
    d_h = (dmat + dmat.T) @ big_a + kmat @ d_big_a
    d_sig = d_big_a.T @ h + big_a.T @ d_h
    d_sig = 0.5 * (d_sig + d_sig.T)
    d_smt = d_big_a.T @ f + big_a.T @ d_f
    if not gamma:
        d_c = _solve(sig_r, d_smt - d_sig @ cmat)
        d_gmm = 0.5 * (d_c @ cmat.T + cmat @ d_c.T)
        d_gmt = -d_c
        d_gg = np.zeros((k, k))
    else:
        d_ainf = d_smt @ smt.T + smt @ d_smt.T
        d_p = vg.T @ sig_r @ g + g.T @ d_sig @ g + g.T @ sig_r @ vg
        d_gmm = 0.5 * (vg @ a_inf @ g.T + g @ d_ainf @ g.T + g @ a_inf @ vg.T)
        d_gmt = (d_p - vg - vg.T) @ smt + (pmat - g - g.T) @ d_smt
        d_gg = d_sig @ g @ a_inf + sig_r @ vg @ a_inf + sig_r @ g @ d_ainf - d_ainf
    d_grad_a = 2.0 * (d_h @ g_mm + h @ d_gmm) + d_f @ g_mt.T + f @ d_gmt.T
    d_s = 2.0 * (d_big_a @ g_mm @ big_a.T + big_a @ d_gmm @ big_a.T + big_a @ g_mm @ d_big_a.T)
    d_t = (d_big_a @ g_mt + big_a @ d_gmt) @ c.T
    d_grad_w = (
        kernel_gradient(kind, w, w, d_s)
        + kernel_gradient(kind, w, u, d_t)
        + kernel_hessian_product(kind, w, w, s, vw, vw)
        + kernel_hessian_product(kind, w, u, t, vw, np.zeros_like(u))
    )
    d_vel = np.empty((m, k + d))
    d_vel[:, :k] = (vpc * grad_a + pc * d_grad_a) / pc - vel[:, :k] * vpc / pc
    d_vel[:, k:] = d_grad_w / pc - vel[:, k:] * vpc / pc
    d_raw = np.sum(va * grad_a + a * d_grad_a, axis=1)
    total = np.sum(p)
    d_delta = d_raw - ((np.sum(vp * raw) + np.sum(p * d_raw)) * total - np.sum(p * raw) * np.sum(vp)) / (total * total)
    d_rate = np.sum(vp * np.sum(vel * vel, axis=1)) + 2.0 * np.sum(p * np.sum(vel * d_vel, axis=1))
    d_dp = np.zeros(m)
    if alpha > 0:
        d_dp = -alpha * (vp * delta + p * d_delta)
        d_rate += alpha * (np.sum(vp * delta * delta) + 2.0 * np.sum(p * delta * d_delta))
    if gamma:
        d_rate += 2.0 * eta * np.sum(g_g * d_gg)
    return _pack(m, k, d, gamma, -d_vel[:, :k], -d_vel[:, k:], d_dp, -eta * d_gg, d_rate)
