r"""The particle-flow field of :class:`~landscape.dynamics.flow.ParticleFlow` in closed form (numba).

For the exact Gaussian backend without a bias, at ``N = ∞`` (any η, birth–death rate α and
ridge λ), the whole field ``f(y)`` of docs/theory.md §6, its diagnostics and its exact
Jacobian-vector product are a few fused kernel passes and ``k×k`` algebra, with no autograd
graph. Each kernel (student–student and student–teacher) is a closed form where one exists
(``erf`` or ``relu`` on both sides: :mod:`landscape.model.kernel_derivatives`) and otherwise the
Mehler series (sigmoid, tanh, gelu, mixed activations: :mod:`landscape.model.series_derivatives`,
docs/theory.md §6.G), whose pair tables are formed once per state (the JVP does no series
work). :func:`unsupported` says where this does not apply; ``ParticleFlow`` then takes its
reference (autograd) path, against which ``tests/dynamics/test_fast_field.py`` checks this one
to rounding.

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
(:func:`~landscape.model.series_derivatives.pair_hessian_product`) to the gradients with
``Ṡ``, ``Ṫ`` — then through the assembly (``ṽ = ḣ/p − v ṗ/p``, the mean-centred first
variation, the rates).

**Batches** (ensembles, :meth:`FastField.evaluate_batch`): for closed-form kernels one compiled
loop over the members evaluates the same formulas without a BLAS or LAPACK call (which cost
more than a tiny member's arithmetic): one pass over the particle pairs gives ``K``, ``K°`` and
the factors of their gradients, the products are plain loops into scratch arrays shared by the
batch, ``Σ_λ⁻¹`` is an in-place LU solve with partial pivoting (a zero pivot: singular, as
LAPACK's) and the extreme eigenvalues of ``Σ_µµ`` come from Jacobi rotations. A member equals
:meth:`FastField.evaluate` to rounding (``tests/dynamics/test_fast_field.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit

from ..landscape import AttentionLandscape
from ..model.kernel_derivatives import ERF, KERNEL_IDS, _erf_gradient_factors, _erf_pair, _erf_rows, _relu_pair
from ..model.kernels import has_closed_form
from ..model.series_derivatives import (
    FIELD,
    JVP,
    MEHLER,
    VALUES,
    no_preparation,
    pair_directional,
    pair_gradient,
    pair_hessian_prepare,
    pair_hessian_product,
    pair_matrix,
    pair_tables,
    radial_jet,
)

__all__ = ["FastField", "FastEvaluation", "unsupported"]

_TWO_OVER_PI = 2.0 / math.pi
_INV_TWO_PI = 1.0 / (2.0 * math.pi)


def unsupported(landscape: AttentionLandscape) -> str | None:
    """Why the closed-form field does not apply to ``landscape`` (one line), or None when it does."""
    exp = landscape.expectation
    if exp.method != "exact":
        return f"the {exp.method} backend has no closed-form field"
    if landscape.finite_prompt:
        return "finite prompt length N (the fourth moments are sampled)"
    if exp.dtype != torch.float64 or exp.device.type != "cpu":
        return f"closed forms run in float64 on the CPU, the landscape is {exp.dtype} on {exp.device}"
    if exp.bias:
        return "a bias column (the fast kernels take none)"
    return None


def _kind(landscape: AttentionLandscape, teacher: bool) -> int:
    """The kernel id of the student–student (``teacher`` false) or student–teacher pair: a closed form's, else :data:`MEHLER`."""
    student = landscape.expectation.activation
    other = landscape.teacher.activation if teacher else student
    return KERNEL_IDS[student.name] if has_closed_form(student, other, False) else MEHLER


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
        self._kinds = (_kind(landscape, False), _kind(landscape, True))
        self._u = np.ascontiguousarray(teacher.u, dtype=np.float64)
        self._c = np.ascontiguousarray(teacher.c, dtype=np.float64)
        self._shape = (m, k, d, gamma)
        self._eta = 0.0 if math.isinf(timescale_ratio) else float(timescale_ratio)
        self._alpha = float(wfr_rate)
        self._ridge = float(landscape.ridge)
        self._singular_rtol = float(landscape.singular_rtol)
        self._base = float(torch.trace(landscape.expectation.sigma_tt)) + landscape.noise**2
        self._quadrature = landscape.expectation.quadrature
        self._activation = landscape.expectation.activation
        self._series = MEHLER in self._kinds
        rows_t, coef_t = np.zeros((3, 0)), np.zeros((2, 0, 0))
        if self._kinds[1] == MEHLER:
            rows_t, values = radial_jet(self._quadrature, teacher.activation, self._u, 0)
            coef_t = np.zeros((2, values.shape[2], self._u.shape[0]))  # b and b' = 0: the teacher is fixed
            coef_t[0] = values[0].T
        self._teacher = (rows_t, coef_t)
        self._no_jets = (np.zeros((3, 0)), np.zeros((1, 0, 0)), np.zeros((2, 0, 0)), rows_t, coef_t)

    def _jets(self, y: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The Mehler series' per-neuron data at the state ``y`` (:func:`~landscape.model.series_derivatives.radial_jet`).

        ``(rows_s (3, M), coef_s (P, M, N), coef_st (2, N, M), rows_t (3, L), coef_t (2, N, L))``:
        the student's ``ν, λ, λ'`` and ``a`` with its ``q``-derivatives up to the ``level``'s
        order, the same transposed as the ``v`` side (``b, b'``), and the teacher's; empty
        arrays where no kernel is a series.
        """
        if not self._series:
            return self._no_jets
        m, k, d, _ = self._shape
        w = y[m * k : m * (k + d)].reshape(m, d)
        rows, coef = radial_jet(self._quadrature, self._activation, w, level)
        coef_t = np.zeros((2, coef.shape[2], m))
        coef_t[: min(level + 1, 2)] = coef[:2].transpose(0, 2, 1)
        return rows, coef, coef_t, *self._teacher

    def _args(self, y: np.ndarray, level: int) -> tuple:
        """The compiled functions' leading arguments: kernel ids, jets, the state and the problem's constants."""
        m, k, d, gamma = self._shape
        return (self._kinds, self._jets(y, level), y, m, k, d, gamma, self._u, self._c)

    def evaluate(self, y: np.ndarray) -> FastEvaluation:
        """The field and its diagnostics at the flat state ``y`` (``Layout`` order, float64).

        Raises:
            numpy.linalg.LinAlgError: when ``Σ_µµ + λI`` is exactly singular.
        """
        return FastEvaluation(_field(*self._args(y, FIELD), self._alpha, self._eta, self._ridge, self._base))

    def linearize(self, y: np.ndarray) -> FastEvaluation:
        """:meth:`evaluate` keeping what :meth:`jvp` needs.

        Raises:
            numpy.linalg.LinAlgError: when ``Σ_µµ + λI`` is exactly singular.
        """
        out = _forward(*self._args(y, JVP), self._alpha, self._eta, self._ridge, self._base, JVP)
        return FastEvaluation(out[:7], out[7])

    def energy(self, y: np.ndarray) -> float:
        """``E`` at the flat state ``y`` (``L_N`` at η = ∞, ``L(µ, Γ)`` otherwise)."""
        return _energy(*self._args(y, VALUES), self._ridge, self._base)

    def evaluate_batch(self, ys: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The field of several states of this layout (ensembles): one compiled loop for closed forms, one :meth:`evaluate` each for series.

        Args:
            ys: array of shape (B, n), one flat state per row.
            members: bool array of shape (B,), the rows to evaluate.

        Returns:
            ``(dy, stats, problem)``: the fields, shape (B, n) (zeros where not evaluated);
            ``stats`` of shape (B, 5), columns ``E``, ``L_N``, ``Σ p|v|²``, ``λ_min``, ``λ_max``
            of ``Σ_µµ`` (NaN where not evaluated or where ``Σ_µµ + λI`` could not be solved);
            ``problem`` int array (B,): 0 where the state is valid, 1 where the field or a
            statistic is not finite (or the row was not evaluated), 2 where ``Σ_µµ`` is singular
            (``λ_min ≤ singular_rtol · λ_max`` of the landscape, or ``Σ_µµ + λI`` not solvable).
        """
        m, k, d, gamma = self._shape
        if not self._series:
            args = (self._kinds[0], np.ascontiguousarray(ys, dtype=np.float64), members, m, k, d, gamma, self._u, self._c)
            return _closed_batch(*args, self._alpha, self._eta, self._ridge, self._base, self._singular_rtol)
        dy, stats, problem = np.zeros_like(ys), np.full((ys.shape[0], 5), np.nan), np.ones(ys.shape[0], dtype=np.int64)
        for i in np.flatnonzero(members):
            try:
                out = self.evaluate(np.ascontiguousarray(ys[i]))
            except np.linalg.LinAlgError:
                problem[i] = 2
                continue
            dy[i] = out.dy
            stats[i] = (out.energy, out.loss, out.grad_sq, out.sigma_min, out.sigma_max)
            problem[i] = _problem(dy[i], stats[i], self._singular_rtol)
        return dy, stats, problem

    def jvp(self, evaluation: FastEvaluation, v: np.ndarray) -> np.ndarray:
        """``(∂f/∂y) v`` at the state of ``evaluation`` (from :meth:`linearize`; ``v``'s ``D`` entry is ignored); shape of ``v``."""
        m, k, d, gamma = self._shape
        return _jvp(self._kinds, v, m, k, d, gamma, self._u, self._c, self._alpha, self._eta, evaluation.saved)


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
def _moments(kinds, jets, level, a, w, p, u, c):
    """``A`` (M, k), ``K`` (M, M), ``K°`` (M, L), ``F`` (M, k°), ``h`` (M, k), ``Σ_µµ`` (k, k), ``Σ_µ°`` (k, k°)
    and the series tables of ``K`` and ``K°`` at ``level`` (:func:`~landscape.model.series_derivatives.pair_tables`)."""
    rows_s, coef_s, coef_st, rows_t, coef_t = jets
    tab_s = pair_tables(kinds[0], w, rows_s, coef_s, w, rows_s, coef_st, level, True)
    tab_t = pair_tables(kinds[1], w, rows_s, coef_s, u, rows_t, coef_t, level, False)
    big_a = a * p.reshape(-1, 1)
    kmat = pair_matrix(kinds[0], w, w, tab_s)
    kt = pair_matrix(kinds[1], w, u, tab_t)
    f = kt @ c
    h = kmat @ big_a
    at = big_a.T.copy()
    sig = at @ h
    sig = 0.5 * (sig + sig.T)
    smt = at @ f
    return big_a, kmat, kt, f, h, sig, smt, tab_s, tab_t


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
def _energy(kinds, jets, y, m, k, d, gamma, u, c, ridge, base):
    a, w, p, g = _unpack(y, m, k, d, gamma)
    sig, smt = _moments(kinds, jets, VALUES, a, w, p, u, c)[5:7]
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
def _field(kinds, jets, y, m, k, d, gamma, u, c, alpha, eta, ridge, base):
    """The field and its diagnostics without the saved intermediates (boxing them costs more than the arithmetic here)."""
    return _forward(kinds, jets, y, m, k, d, gamma, u, c, alpha, eta, ridge, base, FIELD)[:7]


@njit(cache=True, fastmath=False, error_model="numpy")
def _matmul(a, b, out, scale):
    """``out = scale · a b`` by plain loops (``a`` (n, l), ``b`` (l, r), ``out`` (n, r); views allowed):
    for the tiny products of the batch a BLAS call costs more than the arithmetic."""
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            acc = 0.0
            for l in range(a.shape[1]):
                acc += a[i, l] * b[l, j]
            out[i, j] = scale * acc


@njit(cache=True, fastmath=False, error_model="numpy")
def _all_finite(x):
    """Whether every entry of the array ``x`` is finite (without the temporary of ``np.isfinite``)."""
    for v in x.flat:
        if not math.isfinite(v):
            return False
    return True


@njit(cache=True, fastmath=False, error_model="numpy")
def _inner(a, b):
    """``Σ_ij a_ij b_ij`` in row-major order (``np.sum(a * b)`` without the temporary)."""
    acc = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            acc += a[i, j] * b[i, j]
    return acc


@njit(cache=True, fastmath=False, error_model="numpy")
def _lu_solve(a, b, lu, out):
    """``out = a⁻¹ b`` by Gaussian elimination with partial pivoting in the scratch ``lu`` (k, k), as
    LAPACK's ``gesv``; False (``out`` undefined) where a pivot is exactly zero, NaN where ``a`` or
    ``b`` is not finite (:func:`_solve`)."""
    n = a.shape[0]
    if not (_all_finite(a) and _all_finite(b)):
        out[:, :] = np.nan
        return True
    lu[:, :] = a
    out[:, :] = b
    for col in range(n):
        pivot = col
        for r in range(col + 1, n):
            if abs(lu[r, col]) > abs(lu[pivot, col]):
                pivot = r
        if lu[pivot, col] == 0.0:
            return False
        if pivot != col:
            for j in range(n):
                lu[col, j], lu[pivot, j] = lu[pivot, j], lu[col, j]
            for j in range(out.shape[1]):
                out[col, j], out[pivot, j] = out[pivot, j], out[col, j]
        for r in range(col + 1, n):
            factor = lu[r, col] / lu[col, col]
            for j in range(col + 1, n):
                lu[r, j] -= factor * lu[col, j]
            for j in range(out.shape[1]):
                out[r, j] -= factor * out[col, j]
    for col in range(n - 1, -1, -1):
        for j in range(out.shape[1]):
            acc = out[col, j]
            for l in range(col + 1, n):
                acc -= lu[col, l] * out[l, j]
            out[col, j] = acc / lu[col, col]
    return True


@njit(cache=True, fastmath=False, error_model="numpy")
def _extreme_eigenvalues(a, work):
    """``(λ_min, λ_max)`` of the symmetric ``a`` (k, k) by cyclic Jacobi rotations in the scratch
    ``work`` (k, k) (one rotation is exact for k = 2); NaN where ``a`` is not finite (:func:`_eigvalsh`)."""
    n = a.shape[0]
    if not _all_finite(a):
        return np.nan, np.nan
    work[:, :] = a
    for _ in range(64):
        off = 0.0
        total = 0.0
        for i in range(n):
            total += work[i, i] * work[i, i]
            for j in range(i + 1, n):
                off += work[i, j] * work[i, j]
        if not off > 1e-36 * (total + 2.0 * off):
            break
        for p in range(n):
            for q in range(p + 1, n):
                apq = work[p, q]
                if apq == 0.0:
                    continue
                theta = (work[q, q] - work[p, p]) / (2.0 * apq)
                t = 1.0 / (abs(theta) + math.sqrt(theta * theta + 1.0)) if abs(theta) < 1e150 else 0.5 / abs(theta)
                t = t if theta >= 0.0 else -t
                cos = 1.0 / math.sqrt(t * t + 1.0)
                sin = t * cos
                tau = sin / (1.0 + cos)
                work[p, p] -= t * apq
                work[q, q] += t * apq
                work[p, q] = work[q, p] = 0.0
                for r in range(n):
                    if r != p and r != q:
                        grp, grq = work[r, p], work[r, q]
                        work[r, p] = work[p, r] = grp - sin * (grq + grp * tau)
                        work[r, q] = work[q, r] = grq + sin * (grp - grq * tau)
    low, high = work[0, 0], work[0, 0]
    for i in range(1, n):
        low, high = min(low, work[i, i]), max(high, work[i, i])
    return low, high


@njit(cache=True, fastmath=False, error_model="numpy")
def _closed_rows(kind, u):
    """The per-row data of the closed form ``kind`` at ``u`` (M, d): erf's ``(s, e, r, |s|²)``
    (:func:`~landscape.model.kernel_derivatives._erf_rows`), relu's ``(u, ·, ·, ·)``."""
    if kind == ERF:
        return _erf_rows(u)
    m = u.shape[0]
    return u.copy(), np.empty(m), np.empty(m), np.empty(m)


@njit(cache=True, fastmath=False, error_model="numpy")
def _closed_pairs(kind, u, rows_u, v, rows_v, symmetric, kmat, x, alpha, beta):
    """One pass over the pairs of ``u`` (M1, d) and ``v`` (M2, d): ``kmat = κ(u_i, v_j)`` and the
    factors of ``∇_u κ(u_i, v_j) = α_ij (V_j − x_ij U_i) + β_ij U_i`` (``U``, ``V`` the rows'
    first entries), all (M1, M2), by the pair formulas of :mod:`landscape.model.kernel_derivatives`.
    ``symmetric`` (``u`` is ``v``): erf's ``atan2`` once per unordered pair."""
    su, eu, ru, ssu = rows_u
    sv, ev, _, ssv = rows_v
    for i in range(u.shape[0]):
        for j in range(v.shape[0]):
            if kind == ERF:
                xij, cij, branch = _erf_pair(su, eu, ssu, sv, ev, ssv, i, j)
                f, g = _erf_gradient_factors(xij, cij, branch, eu[i], ev[j], ru[i])
                x[i, j], alpha[i, j], beta[i, j] = xij, f * ru[i], g
                if not symmetric or j >= i:
                    kmat[i, j] = _TWO_OVER_PI * math.atan2(xij, cij)
                else:
                    kmat[i, j] = kmat[j, i]
            else:
                a, b, _, sij, theta, _ = _relu_pair(u, v, i, j)
                kmat[i, j] = (sij - b * theta) * _INV_TWO_PI + 0.5 * b
                x[i, j], alpha[i, j] = 0.0, (math.pi - theta) * _INV_TWO_PI
                beta[i, j] = sij / a * _INV_TWO_PI if sij > 0.0 else 0.0


@njit(cache=True, fastmath=False, error_model="numpy")
def _closed_gradient(rows_u, rows_v, x, alpha, beta, weights, out):
    """``out_i = Σ_j W_ij ∇_u κ(u_i, v_j)`` (M1, d) from the factors of :func:`_closed_pairs`."""
    su, sv = rows_u[0], rows_v[0]
    out[:, :] = 0.0
    for i in range(out.shape[0]):
        for j in range(weights.shape[1]):
            wij = weights[i, j]
            if wij == 0.0:
                continue
            fx, gs = wij * alpha[i, j], wij * beta[i, j]
            for col in range(out.shape[1]):
                out[i, col] += fx * (sv[j, col] - x[i, j] * su[i, col]) + gs * su[i, col]


@njit(cache=True, fastmath=False, error_model="numpy")
def _closed_batch(kind, ys, members, m, k, d, gamma, u, c, alpha, eta, ridge, base, singular_rtol):
    """:func:`_field` of every row of ``ys`` (B, n) in ``members`` for closed-form kernels
    (:meth:`FastField.evaluate_batch`): the same formulas, with the ``k×k`` algebra in scratch
    arrays shared by the whole batch (plain loops, an in-place LU solve and Jacobi eigenvalues
    instead of BLAS/LAPACK calls, which cost more than this arithmetic)."""
    b, kc, ell = ys.shape[0], c.shape[1], u.shape[0]
    dy = np.zeros_like(ys)
    stats = np.full((b, 5), np.nan)
    problem = np.ones(b, dtype=np.int64)
    g = np.zeros((k, k))
    big_a, h, grad_a = np.empty((m, k)), np.empty((m, k)), np.empty((m, k))
    f, mk = np.empty((m, kc)), np.empty((m, kc))
    sig, sig_r, lu, work = np.empty((k, k)), np.empty((k, k)), np.empty((k, k)), np.empty((k, k))
    smt, cmat, g_mt, gsmt = np.empty((k, kc)), np.empty((k, kc)), np.empty((k, kc)), np.empty((k, kc))
    g_mm, a_inf, pmat, g_g = np.zeros((k, k)), np.zeros((k, k)), np.zeros((k, k)), np.zeros((k, k))
    kk1, kk2 = np.empty((k, k)), np.empty((k, k))
    s, t = np.empty((m, m)), np.empty((m, ell))
    raw = np.empty(m)
    kmat, xs, al_s, be_s = np.empty((m, m)), np.empty((m, m)), np.empty((m, m)), np.empty((m, m))
    k_t, xt, al_t, be_t = np.empty((m, ell)), np.empty((m, ell)), np.empty((m, ell)), np.empty((m, ell))
    grad_s, grad_t = np.empty((m, d)), np.empty((m, d))
    rows_t = _closed_rows(kind, u)
    start_p, start_g = m * (k + d), m * (k + d + 1)
    for i in range(b):
        if not members[i]:
            continue
        y = ys[i]
        a = y[: m * k].reshape(m, k)
        w = y[m * k : start_p].reshape(m, d)
        p = y[start_p : start_p + m]
        if gamma:
            g[:, :] = y[start_g : start_g + k * k].reshape(k, k)
        for r in range(m):
            for j in range(k):
                big_a[r, j] = a[r, j] * p[r]
        rows_s = _closed_rows(kind, w)
        _closed_pairs(kind, w, rows_s, w, rows_s, True, kmat, xs, al_s, be_s)
        _closed_pairs(kind, w, rows_s, u, rows_t, False, k_t, xt, al_t, be_t)
        _matmul(k_t, c, f, 1.0)
        _matmul(kmat, big_a, h, 1.0)
        _matmul(big_a.T, h, sig, 1.0)
        for r in range(k):
            for j in range(r + 1):
                sig[r, j] = sig[j, r] = 0.5 * (sig[r, j] + sig[j, r])
        _matmul(big_a.T, f, smt, 1.0)
        sig_r[:, :] = sig
        for r in range(k):
            sig_r[r, r] += ridge
        if not _lu_solve(sig_r, smt, lu, cmat):
            problem[i] = 2
            continue
        loss = 0.5 * (base - _inner(smt, cmat))
        energy = loss
        if gamma:
            _matmul(smt, smt.T, a_inf, 1.0)
            _matmul(g.T, sig_r, kk1, 1.0)
            _matmul(kk1, g, pmat, 1.0)
            _matmul(g, smt, gsmt, 1.0)
            _matmul(pmat, a_inf, kk1, 1.0)
            energy = 0.5 * (base - 2.0 * _inner(smt, gsmt) + np.trace(kk1))
            _matmul(g, a_inf, kk1, 1.0)
            _matmul(kk1, g.T, g_mm, 0.5)
            _matmul(pmat - g - g.T, smt, g_mt, 1.0)
            _matmul(sig_r, g, kk2, 1.0)
            _matmul(kk2, a_inf, g_g, 1.0)
            g_g -= a_inf
        else:
            _matmul(cmat, cmat.T, g_mm, 0.5)
            g_mt[:, :] = -cmat
        _matmul(h, g_mm, grad_a, 2.0)
        _matmul(f, g_mt.T, mk, 1.0)
        grad_a += mk
        _matmul(big_a, g_mm, h, 1.0)  # h is free now: A G_mm
        _matmul(h, big_a.T, s, 2.0)
        _matmul(big_a, g_mt, mk, 1.0)
        _matmul(mk, c.T, t, 1.0)
        _closed_gradient(rows_s, rows_s, xs, al_s, be_s, s, grad_s)
        _closed_gradient(rows_s, rows_t, xt, al_t, be_t, t, grad_t)
        out = dy[i]
        total_p, weighted, grad_sq = 0.0, 0.0, 0.0
        for r in range(m):
            total_p += p[r]
            acc, norm = 0.0, 0.0
            for j in range(k):
                acc += a[r, j] * grad_a[r, j]
                vj = p[r] * grad_a[r, j] / p[r]
                norm += vj * vj
                out[r * k + j] = -vj
            for j in range(d):
                vj = (grad_s[r, j] + grad_t[r, j]) / p[r]
                norm += vj * vj
                out[m * k + r * d + j] = -vj
            raw[r] = acc
            weighted += p[r] * raw[r]
            grad_sq += p[r] * norm
        rate = grad_sq
        if alpha > 0:
            mean, spread = weighted / total_p, 0.0
            for r in range(m):
                delta = raw[r] - mean
                out[start_p + r] = -alpha * p[r] * delta
                spread += p[r] * delta * delta
            rate += alpha * spread
        if gamma:
            rate += eta * _inner(g_g, g_g)
            for r in range(k):
                for j in range(k):
                    out[start_g + r * k + j] = -eta * g_g[r, j]
        out[-1] = rate
        low, high = _extreme_eigenvalues(sig, work)
        stats[i, 0], stats[i, 1], stats[i, 2], stats[i, 3], stats[i, 4] = energy, loss, grad_sq, low, high
        problem[i] = _problem(out, stats[i], singular_rtol)
    return dy, stats, problem


@njit(cache=True, fastmath=False, error_model="numpy")
def _problem(dy, stats, singular_rtol):
    """The problem code of one evaluated state (:meth:`FastField.evaluate_batch`) from its field
    ``dy`` (n,) and ``stats`` (5,): 1 if either is not finite, else 2 if ``λ_min ≤ rtol · λ_max``, else 0."""
    if not (_all_finite(dy) and _all_finite(stats)):
        return 1
    return 0 if stats[3] > singular_rtol * stats[4] else 2


@njit(cache=True, fastmath=False, error_model="numpy")
def _forward(kinds, jets, y, m, k, d, gamma, u, c, alpha, eta, ridge, base, level):
    """``(f(y), E, L, Σ p|v|², δ, λ_min, λ_max, saved)``; ``saved`` is what :func:`_jvp` needs (``level`` :data:`JVP`)."""
    a, w, p, g = _unpack(y, m, k, d, gamma)
    big_a, kmat, kt, f, h, sig, smt, tab_s, tab_t = _moments(kinds, jets, level, a, w, p, u, c)
    energy, loss, sig_r, cmat, a_inf, pmat = _objective(sig, smt, g, gamma, ridge, base)
    g_mm, g_mt, g_g = _moment_gradients(cmat, smt, g, sig_r, a_inf, pmat, gamma)
    grad_a = 2.0 * (h @ g_mm) + f @ g_mt.T
    s = 2.0 * (big_a @ g_mm @ big_a.T)
    t = big_a @ g_mt @ c.T
    grad_w = pair_gradient(kinds[0], w, w, tab_s, s) + pair_gradient(kinds[1], w, u, tab_t, t)
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
    prep_s, prep_t = no_preparation(), no_preparation()
    if level == JVP:  # the Hessian products' coefficients for the fixed weights S, T
        prep_s = pair_hessian_prepare(kinds[0], w, w, tab_s, jets[0], jets[0], s)
        prep_t = pair_hessian_prepare(kinds[1], w, u, tab_t, jets[0], jets[3], t)
    tables = (tab_s, tab_t, prep_s, prep_t)
    saved = (a, w, p, g, big_a, kmat, f, h, sig_r, smt, cmat, a_inf, pmat, g_mm, g_mt, g_g, grad_a, s, t, vel, raw, delta, tables)
    return dy, energy, loss, grad_sq, delta, eig[0], eig[-1], saved


@njit(cache=True, fastmath=False, error_model="numpy")
def _jvp(kinds, v, m, k, d, gamma, u, c, alpha, eta, saved):
    a, w, p, g, big_a, kmat, f, h, sig_r, smt, cmat, a_inf, pmat, g_mm, g_mt, g_g, grad_a, s, t, vel, raw, delta, tables = saved
    tab_s, tab_t, prep_s, prep_t = tables
    va, vw, vp, vg = _unpack(v, m, k, d, gamma)
    pc, vpc = p.reshape(-1, 1), vp.reshape(-1, 1)
    d_big_a = vpc * a + pc * va
    dmat = pair_directional(kinds[0], w, w, tab_s, vw)
    d_f = pair_directional(kinds[1], w, u, tab_t, vw) @ c
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
    # Ṡ = 2(Ȧ G_mm Aᵀ + A (Ġ_mm Aᵀ + G_mm Ȧᵀ)): one product of rank 2k
    d_s = 2.0 * (np.concatenate((d_big_a, big_a), axis=1) @ np.concatenate((g_mm @ big_a.T, d_gmm @ big_a.T + g_mm @ d_big_a.T)))
    d_t = (d_big_a @ g_mt + big_a @ d_gmt) @ c.T
    d_grad_w = (
        pair_gradient(kinds[0], w, w, tab_s, d_s)
        + pair_gradient(kinds[1], w, u, tab_t, d_t)
        + pair_hessian_product(kinds[0], w, w, prep_s, s, vw, vw)
        + pair_hessian_product(kinds[1], w, u, prep_t, t, vw, np.zeros_like(u))
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
