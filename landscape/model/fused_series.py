r"""The Mehler series and its derivatives as fused one-pass loops (numba on CPU float64).

The series of docs/theory.md §3.A, ``κ_ij = Σ_n ρ_ijⁿ α_in β_jn``, and every derivative of
it are built from two primitives, each one pass over the ``M1 × M2`` pairs. Coefficients
come as ``K`` stacked pairs (``a`` of shape (K, M1, N), ``b`` of shape (K, M2, N)) whose
series add up, so a sum of series is one pass too:

* :func:`series` — ``S(ρ; a, b)_ij = Σ_k Σ_n ρ_ijⁿ a_kin b_kjn`` (Horner's rule);
* :func:`contract` — the adjoint of ``S`` in its coefficients, with cotangent ``G`` (M1, M2):
  ``Q_kin = Σ_j G_ij ρ_ijⁿ b_kjn`` and ``R_kjn = Σ_i G_ij ρ_ijⁿ a_kin`` together, over running
  powers ``G ρⁿ``.

They close under differentiation (``D`` maps coefficients to those of ``d/dρ``, ``(D a)_n =
(n+1) a_{n+1}``; ``shift`` pads one zero column in front):

* ``∂S`` against cotangent ``G``: ``ρ: G ⊙ S(ρ; Da, b₁)``, ``(a, b): (Q, R) = contract(G, ρ; a, b)``;
* ``∂(Q, R)`` against cotangents ``(H_a, H_b)``: ``G: S(ρ; [H_a, a], [b, H_b])``,
  ``ρ: G ⊙ S(ρ; [DH_a, Da], [b₁, H_b₁])``, ``(a, b): contract(G, ρ; H_a, H_b)`` (roles crossed);
* forward mode: ``dS = dρ ⊙ S(ρ; Da, b₁) + S(ρ; [da, a], [b, db])`` and
  ``d(Q, R) = contract(dG, ρ; a, b) + contract(G, ρ; da, db) + shift(contract(G ⊙ dρ, ρ; Da, Db))``.

:class:`_Series` and :class:`_Contract` are autograd Functions whose backward and jvp are
written with these same two Functions, so derivatives of every order (reverse over reverse
in ``ParticleFlow.linearize``, forward over reverse, batched cotangents) stay exact and each
costs a few fused passes instead of ``O(T)`` tensor passes. Each primitive runs in numba when
its tensors are plain CPU float64 tensors and in torch otherwise (:func:`series_torch`,
:func:`contract_torch`; e.g. under ``torch.func`` transforms or batched cotangents); the torch
forms are also the reference path of ``landscape.model.kernels.mehler_series``.

The fast path is the default; :func:`reference_kernels` selects the reference (plain torch
autograd) path within a ``with`` block, e.g. to compare or time the two.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba
import numpy as np
import torch
from numba import prange

__all__ = [
    "PARALLEL_WORK",
    "closed_derivatives_apply",
    "contract",
    "contract_torch",
    "derivative_coefficients",
    "fused_applies",
    "fused_mehler_series",
    "reference_kernels",
    "series",
    "series_torch",
    "wrapped",
]

_use_reference = False


@contextlib.contextmanager
def reference_kernels(enabled: bool = True) -> Iterator[None]:
    """Within the block, ``mehler_series`` takes the torch reference path (``enabled=False``: the fast one).

    Example::

        with reference_kernels():
            kappa = mehler_series(rho, alpha, beta)  # the torch path, derivatives included
    """
    global _use_reference
    previous, _use_reference = _use_reference, enabled
    try:
        yield
    finally:
        _use_reference = previous


def wrapped(*tensors: torch.Tensor) -> bool:
    """Whether any tensor is a torch.func wrapper (then ``requires_grad`` says nothing) or a batched cotangent.

    Batched cotangents are autograd's ``is_grads_batched`` (legacy vmap) tensors, which numba cannot read.
    """
    checks = [getattr(torch._C._functorch, name, None) for name in ("is_functorch_wrapped_tensor", "is_legacy_batchedtensor")]
    return any(check(t) for check in checks if check is not None for t in tensors)


def _plain(*tensors: torch.Tensor) -> bool:
    """Whether numba can take these tensors: CPU float64 and not torch.func wrappers."""
    return all(t.device.type == "cpu" and t.dtype == torch.float64 for t in tensors) and not wrapped(*tensors)


def fused_applies(*tensors: torch.Tensor) -> bool:
    """Whether ``mehler_series`` takes the fused path for these tensors (CPU float64, unwrapped, not in :func:`reference_kernels`)."""
    return not _use_reference and _plain(*tensors)


def closed_derivatives_apply(*tensors: torch.Tensor) -> bool:
    """Whether closed-form derivative rules (the Hermite coefficients' ``_Coefficients``) apply.

    They do on any device and dtype, outside :func:`reference_kernels` and ``torch.func`` transforms.
    """
    return not _use_reference and not wrapped(*tensors)


def derivative_coefficients(a: torch.Tensor) -> torch.Tensor:
    """Coefficients of ``d/dρ``: ``n a_n`` shifted down one order, shape (..., N) → (..., N−1)."""
    n = torch.arange(1, a.shape[-1], dtype=a.dtype, device=a.device)
    return a[..., 1:] * n


# --- the primitives in torch (reference, and the path under transforms) ---------------------------


def series_torch(rho: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_k Σ_n ρⁿ a_kn b_knᵀ`` by Horner's rule: ``rho`` (M1, M2), ``a`` (K, M1, N), ``b`` (K, M2, N) → (M1, M2)."""
    if a.shape[-1] == 0:
        return torch.zeros_like(rho)
    acc = a[:, :, -1].T @ b[:, :, -1]
    for n in range(a.shape[-1] - 2, -1, -1):
        acc = acc * rho + a[:, :, n].T @ b[:, :, n]
    return acc


def contract_torch(
    g: torch.Tensor, rho: torch.Tensor, a: torch.Tensor, b: torch.Tensor, need_q: bool = True, need_r: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``Q_kin = Σ_j G_ij ρ_ijⁿ b_kjn`` (K, M1, N) and ``R_kjn = Σ_i G_ij ρ_ijⁿ a_kin`` (K, M2, N), one order at a time.

    An output that is not asked for (``need_q``/``need_r`` false) is returned as zeros.
    """
    k, m1, n_terms = a.shape
    m2 = b.shape[1]
    cols_q, cols_r = [], []
    power = g
    for n in range(n_terms):
        if n:
            power = power * rho
        if need_q:
            cols_q.append((power @ b[:, :, n].T).T)
        if need_r:
            cols_r.append(a[:, :, n] @ power)
    q = torch.stack(cols_q, dim=-1) if need_q and n_terms else g.new_zeros((k, m1, n_terms))
    r = torch.stack(cols_r, dim=-1) if need_r and n_terms else g.new_zeros((k, m2, n_terms))
    return q, r


# --- the primitives in numba ---------------------------------------------------------------------


#: pair-terms (M1·M2·N·K) below which a primitive runs on one thread (a parallel launch costs more).
PARALLEL_WORK = 1 << 22


@numba.njit(fastmath=False, cache=True)
def _series_rows(rho: np.ndarray, a: np.ndarray, bt: np.ndarray, lo: int, hi: int, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Rows ``lo:hi`` of the series into ``out`` (zeros): Horner per row, vectorised along j.

    ``rho`` (M1, M2), ``a`` (K, M1, N), ``bt`` (K, N, M2). The first two pairs enter each
    Horner step together, further pairs are added after it.
    """
    n_pairs, _, n_terms = a.shape
    m2 = rho.shape[1]
    for i in range(lo, hi):
        acc, ri = out[i], rho[i]
        for n in range(n_terms - 1, -1, -1):
            c0, b0 = a[0, i, n], bt[0, n]
            if n_pairs == 1:
                for j in range(m2):
                    acc[j] = acc[j] * ri[j] + c0 * b0[j]
            else:
                c1, b1 = a[1, i, n], bt[1, n]
                for j in range(m2):
                    acc[j] = acc[j] * ri[j] + (c0 * b0[j] + c1 * b1[j])
            for k in range(2, n_pairs):
                ck, bk = a[k, i, n], bt[k, n]
                for j in range(m2):
                    acc[j] += ck * bk[j]


@numba.njit(fastmath=False, cache=True)
def _contract_rows(
    g: np.ndarray, rho: np.ndarray, a: np.ndarray, bt: np.ndarray, lo: int, hi: int, q: np.ndarray, r: np.ndarray, need_q: bool, need_r: bool
) -> None:  # pragma: no cover - compiled
    """Rows ``lo:hi`` of ``Q`` into ``q`` (K, M1, N) and their part of ``R`` added into ``r`` (K, N, M2).

    Row ``i`` keeps the running power ``G_i ρ_iⁿ`` (length M2): ``Q`` is its dot product
    with ``b_n`` (BLAS ``ddot``), ``R`` an axpy of it, the last one fused with the step to
    ``G_i ρ_iⁿ⁺¹``.
    """
    n_pairs, _, n_terms = a.shape
    m2 = rho.shape[1]
    power = np.empty(m2)
    for i in range(lo, hi):
        ri = rho[i]
        power[:] = g[i]
        for n in range(n_terms):
            if need_q:
                for k in range(n_pairs):
                    q[k, i, n] = np.dot(power, bt[k, n])
            step = n + 1 < n_terms
            if need_r:
                for k in range(n_pairs - 1):
                    coef, rk = a[k, i, n], r[k, n]
                    for j in range(m2):
                        rk[j] += coef * power[j]
                coef, rk = a[n_pairs - 1, i, n], r[n_pairs - 1, n]
                if step:
                    for j in range(m2):
                        rk[j] += coef * power[j]
                        power[j] *= ri[j]
                else:
                    for j in range(m2):
                        rk[j] += coef * power[j]
            elif step:
                for j in range(m2):
                    power[j] *= ri[j]


@numba.njit(parallel=True, fastmath=False, cache=True)
def _series_parallel(rho: np.ndarray, a: np.ndarray, bt: np.ndarray, chunks: int) -> np.ndarray:  # pragma: no cover - compiled
    """The series over ``chunks`` blocks of rows in parallel: shape (M1, M2)."""
    m1 = rho.shape[0]
    out = np.zeros(rho.shape)
    for c in prange(chunks):
        _series_rows(rho, a, bt, c * m1 // chunks, (c + 1) * m1 // chunks, out)
    return out


@numba.njit(parallel=True, fastmath=False, cache=True)
def _contract_parallel(
    g: np.ndarray, rho: np.ndarray, a: np.ndarray, bt: np.ndarray, chunks: int, need_q: bool, need_r: bool
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``Q`` (K, M1, N) and ``R`` as (K, N, M2) over ``chunks`` blocks of rows in parallel, each adding into its own ``R``."""
    n_pairs, m1, n_terms = a.shape
    q = np.zeros((n_pairs, m1, n_terms))
    r = np.zeros((chunks, n_pairs, n_terms, rho.shape[1]))
    for c in prange(chunks):
        _contract_rows(g, rho, a, bt, c * m1 // chunks, (c + 1) * m1 // chunks, q, r[c], need_q, need_r)
    return q, r.sum(axis=0)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _chunks(rho: torch.Tensor, a: torch.Tensor) -> int:
    """Row blocks to run in parallel: 1 (serial) below :data:`PARALLEL_WORK`, else one per numba thread."""
    work = rho.numel() * a.shape[0] * a.shape[2]
    return 1 if work < PARALLEL_WORK else max(1, min(numba.get_num_threads(), rho.shape[0]))


def _series_numba(rho: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r, aa, bt = _array(rho), _array(a), _array(b.transpose(1, 2))
    chunks = _chunks(rho, a)
    if chunks > 1:
        return torch.from_numpy(_series_parallel(r, aa, bt, chunks))
    out = np.zeros(r.shape)
    _series_rows(r, aa, bt, 0, r.shape[0], out)
    return torch.from_numpy(out)


def _contract_numba(g, rho, a, b, need_q, need_r) -> tuple[torch.Tensor, torch.Tensor]:
    args = (_array(g), _array(rho), _array(a), _array(b.transpose(1, 2)))
    chunks = _chunks(rho, a)
    if chunks > 1:
        q, r = _contract_parallel(*args, chunks, need_q, need_r)
    else:
        q, r = np.zeros(a.shape), np.zeros((a.shape[0], a.shape[2], rho.shape[1]))
        _contract_rows(*args, 0, rho.shape[0], q, r, need_q, need_r)
    return torch.from_numpy(q), torch.from_numpy(np.ascontiguousarray(r.transpose(0, 2, 1)))


def series(rho: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``S(ρ; a, b) = Σ_k Σ_n ρⁿ a_kn b_knᵀ`` without derivatives: numba when the tensors are plain CPU float64, else torch.

    Args:
        rho: tensor of shape (M1, M2).
        a: tensor of shape (K, M1, N); b: tensor of shape (K, M2, N).

    Returns:
        tensor of shape (M1, M2).
    """
    return _series_numba(rho, a, b) if _plain(rho, a, b) else series_torch(rho, a, b)


def contract(
    g: torch.Tensor, rho: torch.Tensor, a: torch.Tensor, b: torch.Tensor, need_q: bool = True, need_r: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Q, R)`` of :func:`contract_torch` without derivatives, by numba when the tensors are plain CPU float64.

    Args:
        g, rho: tensors of shape (M1, M2).
        a: tensor of shape (K, M1, N); b: tensor of shape (K, M2, N).
        need_q, need_r: which outputs to compute (the other is zeros).

    Returns:
        tensors of shapes (K, M1, N) and (K, M2, N).
    """
    if _plain(g, rho, a, b):
        return _contract_numba(g, rho, a, b, need_q, need_r)
    return contract_torch(g, rho, a, b, need_q, need_r)


# --- autograd Functions closed under differentiation ----------------------------------------------


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


class _Series(torch.autograd.Function):
    """``S(ρ; a, b)`` (module docstring), derivatives through :class:`_Series` and :class:`_Contract`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(rho, a, b):
        return series(rho, a, b)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        rho, a, b = ctx.saved_tensors
        need_rho, need_a, need_b = ctx.needs_input_grad
        g_rho = grad * _Series.apply(rho, derivative_coefficients(a), b[:, :, 1:]) if need_rho else None
        g_a = g_b = None
        if need_a or need_b:
            g_a, g_b = _Contract.apply(grad, rho, a, b, need_a, need_b)
        return g_rho, g_a if need_a else None, g_b if need_b else None

    @staticmethod
    def jvp(ctx, d_rho, d_a, d_b):
        rho, a, b = ctx.saved_tensors
        left, right = [], []
        if d_a is not None:
            left.append(d_a)
            right.append(b)
        if d_b is not None:
            left.append(a)
            right.append(d_b)
        out = _Series.apply(rho, _cat(left), _cat(right)) if left else torch.zeros_like(rho)
        if d_rho is not None:
            out = out + d_rho * _Series.apply(rho, derivative_coefficients(a), b[:, :, 1:])
        return out


class _Contract(torch.autograd.Function):
    """``(Q, R) = contract(G, ρ; a, b)`` (module docstring), derivatives through :class:`_Series` and :class:`_Contract`.

    ``need_q``/``need_r`` say which outputs are computed; the other is a constant zero.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(g, rho, a, b, need_q, need_r):
        return contract(g, rho, a, b, need_q, need_r)

    @staticmethod
    def setup_context(ctx, inputs, output):
        g, rho, a, b, need_q, need_r = inputs
        ctx.need_q, ctx.need_r = need_q, need_r
        ctx.save_for_backward(g, rho, a, b)
        ctx.save_for_forward(g, rho, a, b)

    @staticmethod
    def backward(ctx, h_q, h_r):
        g, rho, a, b = ctx.saved_tensors
        need_g, need_rho, need_a, need_b = ctx.needs_input_grad[:4]
        left, right, slope_left, slope_right = [], [], [], []
        if ctx.need_q:  # Q = Σ_j G ρⁿ b: cotangent h_q pairs with b
            left.append(h_q)
            right.append(b)
            slope_left.append(derivative_coefficients(h_q))
            slope_right.append(b[:, :, 1:])
        if ctx.need_r:  # R = Σ_i G ρⁿ a: cotangent h_r pairs with a
            left.append(a)
            right.append(h_r)
            slope_left.append(derivative_coefficients(a))
            slope_right.append(h_r[:, :, 1:])
        g_g = _Series.apply(rho, _cat(left), _cat(right)) if need_g else None
        g_rho = g * _Series.apply(rho, _cat(slope_left), _cat(slope_right)) if need_rho else None
        want_a, want_b = need_a and ctx.need_r, need_b and ctx.need_q
        g_a = g_b = None
        if want_a or want_b:
            # ∂R/∂a against h_r is Σ_j G ρⁿ h_r (a Q with b → h_r); ∂Q/∂b against h_q is an R with a → h_q.
            g_a, g_b = _Contract.apply(g, rho, h_q, h_r, want_a, want_b)
        return g_g, g_rho, g_a if want_a else None, g_b if want_b else None, None, None

    @staticmethod
    def jvp(ctx, d_g, d_rho, d_a, d_b, _need_q, _need_r):
        g, rho, a, b = ctx.saved_tensors
        flags = (ctx.need_q, ctx.need_r)
        terms = []
        if d_g is not None:
            terms.append(_Contract.apply(d_g, rho, a, b, *flags))
        if d_a is not None or d_b is not None:
            terms.append(_Contract.apply(g, rho, torch.zeros_like(a) if d_a is None else d_a, torch.zeros_like(b) if d_b is None else d_b, *flags))
        if d_rho is not None:
            dq, dr = _Contract.apply(g * d_rho, rho, derivative_coefficients(a), derivative_coefficients(b), *flags)
            terms.append((torch.nn.functional.pad(dq, (1, 0)), torch.nn.functional.pad(dr, (1, 0))))
        q, r = terms[0]
        for tq, tr in terms[1:]:
            q, r = q + tq, r + tr
        return q, r


def fused_mehler_series(rho: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``κ_ij = Σ_n ρ_ijⁿ α_in β_jn`` by the fused primitives, differentiable to every order.

    Args:
        rho: tensor of shape (M1, M2); alpha: tensor of shape (M1, T+1); beta: tensor of shape (M2, T+1).

    Returns:
        tensor of shape (M1, M2).
    """
    return _Series.apply(rho, alpha[None], beta[None])
