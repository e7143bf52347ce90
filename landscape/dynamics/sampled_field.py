r"""The particle-flow field of :class:`~landscape.dynamics.flow.ParticleFlow` on a fixed sample, as matrix products.

For the ``monte_carlo`` backend (:class:`~landscape.model.expectations.SampledExpectation`)
every expectation is an average over the fixed sample ``X`` (S, d) (with the ones column
when the neurons carry a bias), so the field of docs/theory.md §5–§6 and its exact
Jacobian-vector product are a few GEMMs with ``σ, σ', σ''`` elementwise, with no autograd
graph through the ``S × M`` activations. It covers what that backend computes: any
activation (the derivatives of :meth:`~landscape.model.activations.Activation.derivatives`),
any teacher (its values ``F = f°(X)`` are the backend's), a bias, label noise τ, every prompt
length ``N`` (``Q_µ`` and ``K_µ = Q_µ + τ²Σ_µµ`` enter ``A_N``), the ridge λ, η = ∞ or finite
and any birth–death rate α. :func:`unsupported` says where it does not apply (another
backend, or not float64 on the CPU); the flow then takes its reference (autograd) path,
against which ``tests/dynamics/test_sampled_field.py`` checks this one to rounding.

**Energy and its gradient.** With ``A = p ⊙ a`` (M, k), ``Z = X Wᵀ`` (S, M), ``Φ = σ(Z)``,
``h = Φ A`` (S, k) and ``g = |f°|²`` (S,) the moments are ``Σ_µµ = hᵀh/S``, ``Σ_µ° = hᵀF/S``
and (finite N) ``Q_µ = (g ⊙ h)ᵀ h/S``. The energy ``E(Σ_µµ, Σ_µ°, Q_µ[, Γ])`` and
``G_• = ∂E/∂•`` are the landscape's own functions of the moments
(:meth:`~landscape.AttentionLandscape.loss_from_moments`,
:meth:`~landscape.AttentionLandscape.loss_with_gamma_from_moments`), differentiated by
autograd on ``k × k`` matrices only. Then

* ``R = ∂E/∂h = [h (G_mm + G_mmᵀ) + F G_mtᵀ + g ⊙ h (G_Q + G_Qᵀ)] / S`` (S, k);
* ``g_A = ∂E/∂A = Φᵀ R``, so ``∂E/∂a_i = p_i g_{A,i}``, ``∂E/∂p_i = a_i·g_{A,i}``;
* ``∂E/∂W = (σ'(Z) ⊙ R Aᵀ)ᵀ X`` (M, d).

**Jacobian-vector product** along ``(ȧ, ẇ, ṗ, Γ̇)`` (docs/theory.md §6.C): ``Ż = X Ẇᵀ``,
``Φ̇ = σ'(Z) ⊙ Ż``, ``ḣ = Φ̇ A + Φ Ȧ``, the moments' tangents from ``ḣ``, ``Ġ_• = ∇²E · (tangents)``
by a second reverse pass through the same ``k × k`` graph (the Hessian is symmetric), ``Ṙ`` from
``ḣ`` and ``Ġ_•``, ``ġ_A = Φ̇ᵀR + ΦᵀṘ`` and
``d(∂E/∂W) = [σ''(Z) ⊙ Ż ⊙ R Aᵀ + σ'(Z) ⊙ (Ṙ Aᵀ + R Ȧᵀ)]ᵀ X``. The terms without ``Ṙ`` or ``ḣ`` are
particle-local and precomputed once per linearisation: ``Φ̇ᵀR = P_iᵀ ẇ_i``, ``(σ'(Z) ⊙ R Ȧᵀ)ᵀX = P_i Ȧ_i``
and ``(σ''(Z) ⊙ Ż ⊙ R Aᵀ)ᵀX = H_i ẇ_i`` with ``P_i = Σ_s σ'(z_si) x_s r_sᵀ`` (d, k) and
``H_i = Σ_s σ''(z_si)(r_s·A_i) x_s x_sᵀ`` (d, d), so a product makes two passes over the sample.

The gradients become the field through the flow's own assembly (``ParticleFlow._assemble``:
velocities over ``p``, the first variation, the WFR rate, ``−η G_Γ``, ``dD/dt``), and its tangent
by forward-mode autograd of that assembly, as on the reference path.

**Cost**: an evaluation computes ``Z`` and ``σ, σ'`` once and makes two passes (``h``, then
``Φᵀ R`` and ``(σ'(Z) ⊙ R Aᵀ)ᵀ X``); a linearisation adds ``P`` and ``H`` (``S × M × d(d+1)/2``, the
upper triangle); a JVP makes two passes of ``S × M × (d + 2k)`` multiply-adds over the kept blocks.
Work runs in row blocks of :data:`BLOCK_ELEMENTS` so that temporaries stay in cache. At the
paper's size (S = 20 000, M = 500, d = 20, k = 5; ``python -m benchmarks sampled-jvp``, one core)
a JVP costs 0.075 CPU s against 0.27 on the autograd path, an evaluation 0.10 against 0.14 and a
linearisation 0.32 against 0.14. **Memory**: ``O(S M)`` — the linearisation keeps ``Φ`` and
``σ'(Z)`` (two ``S × M`` arrays: 160 MB at the paper's size).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..io.files import check_memory
from ..landscape import AttentionLandscape
from .fast_field import FastEvaluation

__all__ = ["SampledField", "unsupported"]

#: the flow's assembly: ``(p (M,), (∂E/∂a, ∂E/∂w, ∂E/∂p[, ∂E/∂Γ])) ↦ (f(y), v (M, k + d), δ (M,))``.
#: most elements of one row block's ``S_b × M`` arrays (2 MiB in float64: a block's temporaries stay in cache,
#: where whole ``S × M`` temporaries cost a page fault per 4 KiB).
BLOCK_ELEMENTS = 1 << 18

Assemble = Callable[[torch.Tensor, tuple], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def unsupported(landscape: AttentionLandscape) -> str | None:
    """Why the sampled field does not apply to ``landscape`` (one line), or None when it does."""
    exp = landscape.expectation
    if exp.method != "monte_carlo":
        return f"the {exp.method} backend has no sampled field"
    if exp.dtype != torch.float64 or exp.device.type != "cpu":
        return f"the sampled field runs in float64 on the CPU, the landscape is {exp.dtype} on {exp.device}"
    return None


class SampledField:
    """The field of one sampled-expectation problem and state layout (the interface of :class:`~.fast_field.FastField`).

    Args:
        landscape: a landscape for which :func:`unsupported` is None.
        m, k, d: particles, features and columns of ``w`` (``d`` includes the bias column).
        gamma: whether Γ is in the state (finite η).
        assemble: the flow's assembly of the field from the energy's gradients (:data:`Assemble`).

    Raises:
        ValueError: when :func:`unsupported` names a reason.
    """

    def __init__(self, landscape: AttentionLandscape, m: int, k: int, d: int, gamma: bool, assemble: Assemble):
        reason = unsupported(landscape)
        if reason is not None:
            raise ValueError(f"the sampled field does not apply: {reason}.")
        exp = landscape.expectation
        self._landscape = landscape
        self._act = exp.activation
        self._x, self._f, self._g = exp._x, exp._f, exp._f_sq  # (S, d), (S, k°), (S,): the backend's sample
        samples = self._x.shape[0]
        # a linearisation keeps Φ and σ'(Z) (S × M each) and the per-particle P_i (d, k) and H_i (d, d): refuse before allocating
        check_memory(8.0 * (2 * samples * m + m * d * (d + k)),
                     f"the sampled engine's linearisation (S = {samples} inputs, M = {m} particles): its S × M arrays")
        self._n = float(exp.samples)
        self._shape = (m, k, d, gamma)
        self._finite = landscape.finite_prompt
        self._assemble = assemble

    # -------------------------------------------------------------- k × k algebra
    def _energy(self, *leaves: torch.Tensor) -> torch.Tensor:
        """``E`` of the moment leaves ``(Σ_µµ, Σ_µ°[, Q_µ][, Γ])`` (the landscape's functions)."""
        sig, smt = leaves[0], leaves[1]
        q = leaves[2] if self._finite else None
        if self._shape[3]:
            return self._landscape.loss_with_gamma_from_moments(leaves[-1], sig, smt, q)
        return self._landscape.loss_from_moments(sig, smt, q)

    def _moments(self, h: torch.Tensor) -> list[torch.Tensor]:
        """``[Σ_µµ, Σ_µ°(, Q_µ)]`` of the features ``h`` (S, k) — the backend's averages."""
        out = [h.T @ h / self._n, h.T @ self._f / self._n]
        if self._finite:
            out.append((h * self._g[:, None]).T @ h / self._n)
        return out

    def _residual(self, h: torch.Tensor, g_mm: torch.Tensor, g_mt: torch.Tensor | None, g_q: torch.Tensor | None) -> torch.Tensor:
        """``[h (G_mm + G_mmᵀ) + F G_mtᵀ + g ⊙ h (G_Q + G_Qᵀ)] / S`` (S, k): ``R = ∂E/∂h`` (module docstring) and,
        with tangents in place of ``h`` or the ``G``'s, the parts of ``Ṙ`` (``g_mt`` None: no teacher term)."""
        r = h @ (g_mm + g_mm.T)
        if g_mt is not None:
            r = r + self._f @ g_mt.T
        if g_q is not None:
            r = r + self._g[:, None] * (h @ (g_q + g_q.T))
        return r / self._n

    def _split(self, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``a`` (M, k), ``w`` (M, d), ``p`` (M,), ``Γ`` (k, k) or None: views of the flat state ``y``."""
        m, k, d, gamma = self._shape
        t = torch.from_numpy(y)
        a, w, p = t[: m * k].view(m, k), t[m * k : m * (k + d)].view(m, d), t[m * (k + d) : m * (k + d + 1)]
        return a, w, p, t[m * (k + d + 1) : m * (k + d + 1) + k * k].view(k, k) if gamma else None

    # -------------------------------------------------------------- public interface
    def energy(self, y: np.ndarray) -> float:
        """``E`` at the flat state ``y`` (``L_N`` at η = ∞, ``L(µ, Γ)`` otherwise)."""
        a, w, p, gamma = self._split(y)
        big_a = p[:, None] * a
        h = torch.cat([self._act(xb @ w.T) @ big_a for xb in self._blocks(w.shape[0])])
        return float(self._energy(*self._moments(h), *(() if gamma is None else (gamma,))))

    def evaluate(self, y: np.ndarray) -> FastEvaluation:
        """The field and its diagnostics at the flat state ``y`` (``Layout`` order, float64).

        Raises:
            torch.linalg.LinAlgError: when ``Σ_µµ + λI`` (or ``A_N``) is exactly singular.
        """
        return self._forward(y, keep=False)

    def linearize(self, y: np.ndarray) -> FastEvaluation:
        """:meth:`evaluate` keeping what :meth:`jvp` needs: ``Φ`` and ``σ'(Z)`` (two ``S × M`` arrays,
        in row blocks), the per-particle ``P_i`` (d, k) and ``H_i`` (d, d), and the ``S × k`` features.

        Raises:
            torch.linalg.LinAlgError: when ``Σ_µµ + λI`` (or ``A_N``) is exactly singular.
        """
        return self._forward(y, keep=True)

    def _blocks(self, m: int) -> tuple[torch.Tensor, ...]:
        """Row blocks of the sample ``X`` of :data:`BLOCK_ELEMENTS` ``/ M`` rows each (views)."""
        return self._x.split(max(1, BLOCK_ELEMENTS // max(m, 1)))

    def _outer(self, xb: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``x_s ⊗ r_s`` of the sample rows ``xb`` (S_b, d): shape (S_b, d·j) for ``r`` (S_b, j)."""
        return (xb[:, :, None] * r[:, None, :]).reshape(r.shape[0], -1)

    def _forward(self, y: np.ndarray, keep: bool) -> FastEvaluation:
        """The field, its diagnostics and (``keep``) the intermediates of :meth:`jvp`.

        Accumulators are transposed (``(k, M)``, ``(d, M)``, …): products ``Bᵀ C`` with the
        long ``S_b`` axis inside and ``M`` outside run about twice as fast as ``Cᵀ B`` here.
        """
        a, w, p, gamma = self._split(y)
        m, k, d, _ = self._shape
        big_a = p[:, None] * a
        xs = self._blocks(m)
        ders = [self._act.derivatives(xb @ w.T, 2 if keep else 1) for xb in xs]  # [σ, σ'(, σ'')] of Z_b, (S_b, M)
        h = torch.cat([ds[0] @ big_a for ds in ders])
        leaves = tuple(t.detach().requires_grad_(True) for t in (*self._moments(h), *(() if gamma is None else (gamma,))))
        with torch.enable_grad():  # autograd on k × k matrices only; the graph is kept for the JVP's Ġ
            energy = self._energy(*leaves)
            moment_grads = torch.autograd.grad(energy, leaves, create_graph=keep)
        energy = energy.detach()
        grads_now = tuple(g.detach() for g in moment_grads)
        r = self._residual(h, grads_now[0], grads_now[1], grads_now[2] if self._finite else None)
        ga_t, gw_t = torch.zeros(k, m, dtype=a.dtype), torch.zeros(d, m, dtype=a.dtype)
        upper = torch.triu_indices(d, d)  # H_i is symmetric: its upper triangle (j ≤ l) is accumulated
        p_t, h_t = torch.zeros(d * k, m, dtype=a.dtype), torch.zeros(upper.shape[1], m, dtype=a.dtype)
        for xb, rb, ds in zip(xs, r.split(xs[0].shape[0]), ders, strict=True):
            ga_t.addmm_(rb.T, ds[0])
            ra = rb @ big_a.T
            gw_t.addmm_(xb.T, ds[1] * ra)  # ((σ'(Z) ⊙ R Aᵀ)ᵀ X)ᵀ
            if keep:  # P_i = Σ_s σ'(z_si) x_s r_sᵀ, H_i = Σ_s σ''(z_si) (r_s·A_i) x_s x_sᵀ
                p_t.addmm_(self._outer(xb, rb).T, ds[1])
                h_t.addmm_((xb[:, upper[0]] * xb[:, upper[1]]).T, ds.pop().mul_(ra))
        ga = ga_t.T
        grads = (p[:, None] * ga, gw_t.T, (a * ga).sum(1)) + (() if gamma is None else (grads_now[-1],))
        dy, v, delta = self._assemble(p, grads)
        loss = float(energy) if gamma is None else float(self._landscape.loss_from_moments(*(t.detach() for t in leaves[:-1])))
        eig = torch.linalg.eigvalsh(leaves[0].detach())
        out = (dy.numpy(), float(energy), loss, float((p * (v * v).sum(1)).sum()), delta.numpy(), float(eig[0]), float(eig[-1]))
        if not keep:
            return FastEvaluation(out)
        h_mat = torch.zeros(m, d, d, dtype=a.dtype)
        h_mat[:, upper[0], upper[1]] = h_t.T
        h_mat[:, upper[1], upper[0]] = h_t.T
        local = (p_t.T.reshape(m, d, k), h_mat)
        return FastEvaluation(out, (a, p, big_a, xs, ders, local, h, r, ga, leaves, moment_grads, grads))

    def jvp(self, evaluation: FastEvaluation, v: np.ndarray) -> np.ndarray:
        """``(∂f/∂y) v`` at the state of ``evaluation`` (from :meth:`linearize`; ``v``'s ``D`` entry is ignored); shape of ``v``.

        The particle-local terms come from ``P_i`` and ``H_i`` (``Φ̇ᵀR = P_iᵀẇ_i``,
        ``(σ'(Z) ⊙ R Ȧᵀ)ᵀX = P_i Ȧ_i``, ``(σ''(Z) ⊙ Ż ⊙ R Aᵀ)ᵀX = H_i ẇ_i``); two passes over the
        stored blocks carry the coupling: ``ḣ = (σ'(Z) ⊙ X Ẇᵀ) A + Φ Ȧ``, then ``Φᵀ Ṙ`` and ``(σ'(Z) ⊙ Ṙ Aᵀ)ᵀ X``.
        """
        a, p, big_a, xs, ders, (p_mat, h_mat), h, r, ga, leaves, moment_grads, grads = evaluation.saved
        m, k, d, _ = self._shape
        va, vw, vp, vg = self._split(v)
        d_big_a = vp[:, None] * a + p[:, None] * va
        a_t, da_t = big_a.T, d_big_a.T  # (k, M): products with the long S_b axis inside (see :meth:`_forward`)
        dh = torch.cat([(a_t @ (xb @ vw.T).mul_(d1).T + da_t @ phi.T).T for xb, (phi, d1) in zip(xs, ders, strict=True)])
        tangents = (*self._moments_tangent(h, dh), *(() if vg is None else (vg,)))
        # Ġ = ∇²E · (moment tangents): the vector-Jacobian product of the gradient (the Hessian is symmetric)
        d_moment = torch.autograd.grad(moment_grads, leaves, tangents, retain_graph=True, materialize_grads=True)
        moment_grads = tuple(g.detach() for g in moment_grads)
        q, d_q = (moment_grads[2], d_moment[2]) if self._finite else (None, None)
        dr = self._residual(dh, moment_grads[0], None, q) + self._residual(h, d_moment[0], d_moment[1], d_q)
        d_ga_t, d_gw_t = torch.zeros(k, m, dtype=a.dtype), torch.zeros(d, m, dtype=a.dtype)
        for xb, drb, (phi, d1) in zip(xs, dr.split(xs[0].shape[0]), ders, strict=True):
            d_ga_t.addmm_(drb.T, phi)
            d_gw_t.addmm_(xb.T, (drb @ a_t).mul_(d1))  # ((σ'(Z) ⊙ Ṙ Aᵀ)ᵀ X)ᵀ
        d_ga = d_ga_t.T + torch.einsum("idk,id->ik", p_mat, vw)
        d_gw = d_gw_t.T + torch.einsum("idk,ik->id", p_mat, d_big_a) + torch.einsum("ide,ie->id", h_mat, vw)
        d_grads = (
            vp[:, None] * ga + p[:, None] * d_ga,
            d_gw,
            (va * ga + a * d_ga).sum(1),
            *((d_moment[-1],) if vg is not None else ()),
        )
        _, dy = torch.func.jvp(lambda p_, *g_: self._assemble(p_, g_)[0], (p, *grads), (vp, *d_grads))
        return dy.numpy()

    def _moments_tangent(self, h: torch.Tensor, dh: torch.Tensor) -> list[torch.Tensor]:
        """The tangents of :meth:`_moments` along ``ḣ = dh`` (S, k)."""
        cross = dh.T @ h
        out = [(cross + cross.T) / self._n, dh.T @ self._f / self._n]
        if self._finite:
            gh = h * self._g[:, None]
            out.append(((dh * self._g[:, None]).T @ h + gh.T @ dh) / self._n)
        return out
