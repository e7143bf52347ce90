r"""Expectation backends: the second moments of docs/theory.md §3 for a particle measure.

Both backends expose the same interface, so the landscape is written once:

* :meth:`moments` → ``(Σ_µµ, Σ_µ°, Q_µ)`` with ``Q_µ = E[|f°|² h_µ h_µᵀ]`` (so that
  ``K_µ = Q_µ + τ² Σ_µµ``), each a differentiable function of ``(a, w, p)``;
* :meth:`probe_moments` → ``E[σ(w_q·x) h_µ]``, ``E[σ(w_q·x) f°]``, ``E[σ(w_q·x)|f°|² h_µ]``
  for probe neurons ``w_q`` (what the first variation needs);
* :attr:`sigma_tt` → ``Σ_°° = E[f° f°ᵀ]``.

:class:`ExactGaussianExpectation` uses the Gaussian kernels of :mod:`landscape.model.kernels`
(no sampling noise; ``Q_µ``, a four-projection integral, is taken on a fixed seeded sample
whose standard error :meth:`fourth_moment_stderr` reports). :class:`SampledExpectation`
averages over a fixed seeded sample ``X`` of shape (n, d) from any input law, in chunks
of rows so memory stays bounded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from .activations import Activation
from .kernels import HermiteQuadrature, gaussian_kernel, has_closed_form
from .laws import as_tensor
from .teacher import Teacher

__all__ = [
    "Moments",
    "ProbeMoments",
    "ExactGaussianExpectation",
    "SampledExpectation",
    "AUTO_ORDERS",
    "AUTO_KERNEL_TOL",
    "TAIL_SAFETY",
    "truncation_bound",
    "choose_quadrature",
]

#: the Mehler orders ``hermite_order = "auto"`` tries, smallest first.
AUTO_ORDERS = (32, 64, 128, 256, 512)
#: the kernel truncation error ``"auto"`` meets where the ladder allows.
AUTO_KERNEL_TOL = 1e-10
#: truncation error of κ over the product of the two neurons' coefficient tails, at most:
#: measured ≤ 17 against order 2048 (tanh, sigmoid, gelu at |w| ≤ 10, orders 32–512, ρ = 0.6 and 1).
TAIL_SAFETY = 30.0

#: default sample size for ``Q_µ`` in the exact backend (finite prompt length only).
DEFAULT_FOURTH_MOMENT_SAMPLES = 200_000
#: default rows per chunk in sampled expectations.
DEFAULT_CHUNK_ROWS = 65_536
#: most elements of one (rows × particles) block of ``σ(X Wᵀ)`` in sampled expectations
#: (8 MiB in float64, cache-sized: 1.6× faster than 64 MiB blocks at M = 1600, n = 16 000 on
#: the 2-core benchmark box): rows per chunk shrink, and particles are split, to stay below it.
DEFAULT_BLOCK_ELEMENTS = 1 << 20
#: above this many elements of the whole ``n × M`` activation, gradients recompute each
#: block in the backward pass (activation checkpointing) instead of storing all of them,
#: so that memory stays ``O(block + n k + M d)`` for any ``M`` (reverse-mode autograd only;
#: under ``torch.func`` transforms the plain, stored path is taken).
CHECKPOINT_ELEMENTS = 1 << 25


class Moments(NamedTuple):
    """Second moments of ``h_µ`` against itself and the teacher.

    Attributes:
        sigma_mm: (k, k) ``Σ_µµ``.
        sigma_mt: (k, k°) ``Σ_µ°``.
        fourth: (k, k) ``Q_µ = E[|f°|² h hᵀ]``, or None when not requested.
    """

    sigma_mm: torch.Tensor
    sigma_mt: torch.Tensor
    fourth: torch.Tensor | None


class ProbeMoments(NamedTuple):
    """Cross moments of probe neurons ``σ(w_q·x)`` (shapes (Q, k), (Q, k°), (Q, k) or None)."""

    with_model: torch.Tensor
    with_teacher: torch.Tensor
    fourth: torch.Tensor | None


def _split_bias(w: torch.Tensor, bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    return (w[:, :-1], w[:, -1]) if bias else (w, None)


@dataclass
class _Base:
    teacher: Teacher
    activation: Activation
    bias: bool
    dtype: torch.dtype
    device: torch.device

    def _teacher_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        c = torch.as_tensor(self.teacher.c, dtype=self.dtype, device=self.device)
        u = torch.as_tensor(self.teacher.u, dtype=self.dtype, device=self.device)
        return c, u


class ExactGaussianExpectation(_Base):
    """Exact expectations over ``x ~ N(0, I_d)`` through Gaussian kernels.

    Args:
        teacher: the teacher network.
        activation: the student's σ.
        bias: whether the student's ``w`` carries a bias column (last).
        quadrature: Mehler-series rule for kernels without a closed form.
        fourth_samples: sample size for ``Q_µ`` (finite prompt length only).
        seed: seed of that sample.
        dtype, device: torch dtype and device of every tensor.
    """

    method = "exact"
    #: how the order was chosen (:func:`choose_quadrature`'s record), or None for a given order.
    order_choice: dict | None = None

    def __init__(
        self,
        teacher: Teacher,
        activation: Activation,
        bias: bool = False,
        quadrature: HermiteQuadrature | None = None,
        fourth_samples: int = DEFAULT_FOURTH_MOMENT_SAMPLES,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(teacher, activation, bias, dtype, torch.device(device))
        self.quadrature = quadrature or HermiteQuadrature()
        self.fourth_samples = fourth_samples
        self.seed = seed
        c, u = self._teacher_tensors()
        self._c, self._u = c, u
        act = teacher.activation
        k_tt = gaussian_kernel(act, u, None, act, u, None, self.quadrature)
        self.sigma_tt = c.T @ k_tt @ c
        self._fourth_sample: SampledExpectation | None = None

    def _kernel_student(self, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        u1, b1 = _split_bias(w1, self.bias)
        u2, b2 = (u1, b1) if w2 is w1 else _split_bias(w2, self.bias)
        return gaussian_kernel(self.activation, u1, b1, self.activation, u2, b2, self.quadrature)

    def _kernel_teacher(self, w: torch.Tensor) -> torch.Tensor:
        u1, b1 = _split_bias(w, self.bias)
        act = self.teacher.activation
        return gaussian_kernel(self.activation, u1, b1, act, self._u, None, self.quadrature)

    @property
    def fourth_sample(self) -> "SampledExpectation":
        """The seeded Gaussian sample on which ``Q_µ`` is taken (built on first use)."""
        if self._fourth_sample is None:
            x = np.random.default_rng(self.seed).standard_normal((self.fourth_samples, self.teacher.dim))
            self._fourth_sample = SampledExpectation(
                self.teacher, self.activation, x, self.bias, dtype=self.dtype, device=self.device
            )
        return self._fourth_sample

    def moments(self, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor, fourth: bool = False) -> Moments:
        """Moments of ``µ = Σ p_i δ(a_i, w_i)``; ``a`` (M, k), ``w`` (M, d), ``p`` (M,)."""
        ap = p[:, None] * a
        sigma_mm = ap.T @ self._kernel_student(w, w) @ ap
        sigma_mm = 0.5 * (sigma_mm + sigma_mm.T)
        sigma_mt = ap.T @ self._kernel_teacher(w) @ self._c
        q = self.fourth_sample.moments(a, w, p, fourth=True).fourth if fourth else None
        return Moments(sigma_mm, sigma_mt, q)

    def probe_moments(
        self, probe_w: torch.Tensor, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor, fourth: bool = False
    ) -> ProbeMoments:
        """Cross moments of probe neurons ``probe_w`` (Q, d) with ``h_µ`` and ``f°``."""
        ap = p[:, None] * a
        with_model = self._kernel_student(probe_w, w) @ ap
        with_teacher = self._kernel_teacher(probe_w) @ self._c
        q = self.fourth_sample.probe_moments(probe_w, a, w, p, fourth=True).fourth if fourth else None
        return ProbeMoments(with_model, with_teacher, q)

    def fourth_moment_stderr(self, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor) -> float:
        """Largest standard error of an entry of the sampled ``Q_µ``."""
        return self.fourth_sample.fourth_moment_stderr(a, w, p)

    @property
    def uses_quadrature(self) -> bool:
        """Whether some kernel of this backend is a Mehler series (no closed form).

        The pairs are student–student, student–teacher and teacher–teacher, each decided by
        :func:`landscape.model.kernels.has_closed_form` as :func:`gaussian_kernel` decides it.
        """
        student, teacher = self.activation, self.teacher.activation
        pairs = ((student, student, self.bias), (student, teacher, self.bias), (teacher, teacher, False))
        return not all(has_closed_form(a, b, biased) for a, b, biased in pairs)

    def with_quadrature(self, quadrature: HermiteQuadrature) -> "ExactGaussianExpectation":
        """The same backend with another Mehler rule, sharing this one's ``Q_µ`` sample."""
        other = ExactGaussianExpectation(
            self.teacher, self.activation, self.bias, quadrature, self.fourth_samples, self.seed, self.dtype, self.device
        )
        other._fourth_sample = self._fourth_sample
        return other

    def jackknife(self, groups: int) -> list["ExactGaussianExpectation"]:
        """``groups`` copies whose ``Q_µ`` sample each leaves out one group of rows (see
        :meth:`SampledExpectation.jackknife`); the kernels are shared."""
        copies = []
        for sample in self.fourth_sample.jackknife(groups):
            other = copy.copy(self)
            other._fourth_sample = sample
            copies.append(other)
        return copies

    def describe(self) -> dict:
        """Settings, for reports (with ``hermite_order_auto`` when the order was chosen by :func:`choose_quadrature`)."""
        out = {
            "method": self.method,
            "hermite_order": self.quadrature.order,
            "hermite_step": self.quadrature.step,
            "fourth_moment_samples": self.fourth_samples,
            "seed": self.seed,
        }
        if self.order_choice is not None:
            out["hermite_order_auto"] = self.order_choice
        return out


class SampledExpectation(_Base):
    """Expectations as averages over a fixed sample.

    Args:
        teacher: the teacher network.
        activation: the student's σ.
        x: array of shape (n, d), the sample (rows are inputs).
        bias: whether the student's ``w`` carries a bias column (last).
        chunk_rows: rows per chunk (bounds memory at ``chunk_rows × M``; fewer rows, and
            blocks of particles, when that exceeds ``block_elements``).
        dtype, device: torch dtype and device.
        block_elements: most elements of one block of ``σ(X Wᵀ)``.
    """

    method = "monte_carlo"

    def __init__(
        self,
        teacher: Teacher,
        activation: Activation,
        x: np.ndarray,
        bias: bool = False,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    ) -> None:
        super().__init__(teacher, activation, bias, dtype, torch.device(device))
        self.block_elements = int(block_elements)
        x_t = as_tensor(x, dtype, self.device)
        if x_t.ndim != 2 or x_t.shape[1] != teacher.dim:
            raise ValueError(f"sample must have shape (n, {teacher.dim}), got {tuple(x_t.shape)}.")
        self.samples = x_t.shape[0]
        self.chunk_rows = chunk_rows
        self._f = teacher(x_t)
        self._f_sq = (self._f * self._f).sum(-1)
        self._x = torch.cat([x_t, torch.ones_like(x_t[:, :1])], dim=1) if bias else x_t
        self.sigma_tt = self._f.T @ self._f / self.samples

    def _chunks(self, particles: int):
        """Row chunks ``(x, f, |f|²)``: ``chunk_rows`` rows, fewer when ``rows × M`` exceeds a block."""
        rows = self.chunk_rows
        if rows * particles > self.block_elements:
            rows = max(min(rows, self.block_elements // max(particles, 1)), 256)
        for start in range(0, self.samples, rows):
            stop = min(start + rows, self.samples)
            yield self._x[start:stop], self._f[start:stop], self._f_sq[start:stop]

    def _checkpointed(self, *tensors: torch.Tensor) -> bool:
        """Whether to recompute blocks in the backward pass: a large graph is being recorded."""
        if not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors):
            return False
        if self.samples * tensors[0].shape[0] <= CHECKPOINT_ELEMENTS:
            return False
        is_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
        return not (is_wrapped is not None and any(is_wrapped(t) for t in tensors))

    def _apply(self, x: torch.Tensor, w: torch.Tensor, right: torch.Tensor, transpose: bool, ckpt: bool) -> torch.Tensor:
        """``σ(x wᵀ) @ right`` (``transpose=False``) or ``σ(x wᵀ)ᵀ @ right``, in blocks of particles.

        ``x`` (r, d), ``w`` (M, d); ``right`` is (M, j), or (r, j) when transposed. One block
        never exceeds ``block_elements``; with ``ckpt`` each block is recomputed in the
        backward pass instead of stored.
        """
        act = self.activation

        def block(xb, wb, rb):
            phi = act(xb @ wb.T)
            return phi.T @ rb if transpose else phi @ rb

        per_block = max(1, self.block_elements // max(x.shape[0], 1))
        if per_block >= w.shape[0] and not ckpt:
            return block(x, w, right)
        run = (lambda *t: checkpoint(block, *t, use_reentrant=False)) if ckpt else block
        if transpose:
            return torch.cat([run(x, wb, right) for wb in w.split(per_block)], dim=0)
        out = None
        for wb, rb in zip(w.split(per_block), right.split(per_block), strict=True):
            part = run(x, wb, rb)
            out = part if out is None else out + part
        return out

    def features(self, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``h_µ(x)`` for rows ``x`` (n, d or d+1 with the ones column); shape (n, k)."""
        return self._apply(x, w, p[:, None] * a, False, self._checkpointed(w, a, p))

    def moments(self, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor, fourth: bool = False) -> Moments:
        """Moments of ``µ``; ``a`` (M, k), ``w`` (M, d), ``p`` (M,).

        Memory: one block of ``σ(X Wᵀ)`` (``block_elements``) plus, under autograd, the
        stored blocks (up to ``CHECKPOINT_ELEMENTS``; beyond that they are recomputed in
        the backward pass), so ``O(block + n k + M d)`` for any ``M`` and ``n``.
        """
        sigma_mm = sigma_mt = q = 0.0
        ckpt = self._checkpointed(w, a, p)
        ap = p[:, None] * a
        for x, f, f_sq in self._chunks(w.shape[0]):
            h = self._apply(x, w, ap, False, ckpt)
            sigma_mm = sigma_mm + h.T @ h
            sigma_mt = sigma_mt + h.T @ f
            if fourth:
                q = q + (h * f_sq[:, None]).T @ h
        n = self.samples
        return Moments(sigma_mm / n, sigma_mt / n, q / n if fourth else None)

    def probe_moments(
        self, probe_w: torch.Tensor, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor, fourth: bool = False
    ) -> ProbeMoments:
        """Cross moments of probe neurons ``probe_w`` (Q, d) with ``h_µ`` and ``f°``.

        One fused product ``σ(X W_qᵀ)ᵀ [h, f, |f|² h]`` per chunk, blocked like :meth:`moments`.
        """
        with_model = with_teacher = q = 0.0
        ckpt = self._checkpointed(w, a, p, probe_w)
        ap = p[:, None] * a
        k, k0 = a.shape[1], self._f.shape[1]
        for x, f, f_sq in self._chunks(max(w.shape[0], probe_w.shape[0])):
            h = self._apply(x, w, ap, False, ckpt)
            right = torch.cat([h, f, h * f_sq[:, None]] if fourth else [h, f], dim=1)
            out = self._apply(x, probe_w, right, True, ckpt)
            with_model = with_model + out[:, :k]
            with_teacher = with_teacher + out[:, k : k + k0]
            if fourth:
                q = q + out[:, k + k0 :]
        n = self.samples
        return ProbeMoments(with_model / n, with_teacher / n, q / n if fourth else None)

    def fourth_moment_stderr(self, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor) -> float:
        """Largest standard error of an entry of ``Q_µ = mean(|f|² h hᵀ)`` over the sample."""
        with torch.no_grad():
            h = self.features(a, w, p, self._x)
            terms = self._f_sq[:, None, None] * h[:, :, None] * h[:, None, :]
            return float(terms.std(dim=0).max() / self.samples**0.5)

    def jackknife(self, groups: int) -> list["SampledExpectation"]:
        """``groups`` copies, copy ``g`` without the rows ``i ≡ g (mod groups)`` (delete-a-group jackknife).

        A statistic ``θ`` computed on each copy gives ``θ_g``; its standard error is
        ``√((G−1)/G · Σ_g (θ_g − θ̄)²)``. Raises ``ValueError`` when a group would be empty.
        """
        if not 2 <= groups <= self.samples:
            raise ValueError(f"a jackknife needs 2 ≤ groups ≤ samples = {self.samples}, got {groups}.")
        index = torch.arange(self.samples, device=self.device)
        copies = []
        for g in range(groups):
            keep = index % groups != g
            other = copy.copy(self)
            other._x, other._f, other._f_sq = self._x[keep], self._f[keep], self._f_sq[keep]
            other.samples = int(keep.sum())
            other.sigma_tt = other._f.T @ other._f / other.samples
            copies.append(other)
        return copies

    def describe(self) -> dict:
        """Settings, for reports."""
        return {"method": self.method, "samples": self.samples}


def _mehler_radii(teacher: Teacher, activation: Activation, bias: bool, w: np.ndarray) -> list[tuple[Activation, np.ndarray, np.ndarray | None]]:
    """The neurons whose tails bound a Mehler series: ``(σ, radii (m,), biases (m,) or None)``, student then teacher.

    Per set, the neurons of largest ``|w|``, largest ``|b|`` and largest ``|w| + |b|`` (the
    tails grow with both), so that the cost does not grow with ``M``.
    """
    radius = np.linalg.norm(w[:, :-1] if bias else w, axis=1)
    if bias:
        b = w[:, -1]
        pick = np.unique([np.argmax(radius), np.argmax(np.abs(b)), np.argmax(radius + np.abs(b))]) if len(w) else []
        student = (activation, radius[pick], b[pick])
    else:
        student = (activation, radius[np.argmax(radius)][None] if len(w) else radius, None)
    tea = (teacher.activation, np.max(np.linalg.norm(teacher.u, axis=1), keepdims=True), None)
    sets = []
    if not has_closed_form(activation, activation, bias) or not has_closed_form(activation, teacher.activation, bias):
        sets.append(student)
    if not has_closed_form(activation, teacher.activation, bias) or not has_closed_form(teacher.activation, teacher.activation, False):
        sets.append(tea)
    return sets


def truncation_bound(
    quadrature: HermiteQuadrature, teacher: Teacher, activation: Activation, bias: bool, w: np.ndarray
) -> float:
    """An upper estimate of the Mehler truncation error of every kernel entry: ``TAIL_SAFETY · max tail²``.

    The tails (:meth:`HermiteQuadrature.tail`) are taken at every neuron that enters a series
    (student rows ``w`` of shape (M, d) or (M, d+1) with the bias last, and the teacher),
    and the error of ``κ(u, v)`` at ``|ρ| ≤ 1`` is within :data:`TAIL_SAFETY` times the
    product of the two tails (docs/theory.md §3.A). 0 when every kernel has a closed form.
    """
    worst = 0.0
    for act, radius, b in _mehler_radii(teacher, activation, bias, np.asarray(w, dtype=np.float64)):
        tails = quadrature.tail(
            act, torch.as_tensor(radius, dtype=torch.float64), None if b is None else torch.as_tensor(b, dtype=torch.float64)
        )
        worst = max(worst, float(tails.max()) if tails.numel() else 0.0)
    return TAIL_SAFETY * worst * worst


def choose_quadrature(
    teacher: Teacher,
    activation: Activation,
    bias: bool,
    w: np.ndarray,
    step: float,
    tol: float = AUTO_KERNEL_TOL,
    headroom: float = 1.0,
) -> tuple[HermiteQuadrature, dict]:
    """The smallest order of :data:`AUTO_ORDERS` whose :func:`truncation_bound` is ``≤ tol``.

    Args:
        teacher, activation, bias: the problem.
        w: array (M, d) or (M, d+1): the measure's weights (bias last).
        step: the trapezoid step (kept as given).
        tol: the kernel truncation tolerance.
        headroom: factor on the student's weights (and biases) — ``train`` asks for room
            to grow (the flow changes |w|); 1 for a fixed measure.

    Returns:
        ``(quadrature, record)``; ``record`` = ``{"tolerance", "headroom", "bound",
        "ladder", "met"}`` (``met`` False: the largest order did not meet ``tol``, and the
        caller warns).
    """
    scaled = headroom * np.asarray(w, dtype=np.float64)
    for order in AUTO_ORDERS:
        quadrature = HermiteQuadrature(order, step)
        bound = truncation_bound(quadrature, teacher, activation, bias, scaled)
        if bound <= tol:
            break
    record = {"tolerance": tol, "headroom": headroom, "bound": bound, "ladder": list(AUTO_ORDERS), "met": bound <= tol}
    return quadrature, record
