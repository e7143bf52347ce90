r"""The particle flow of docs/theory.md §6 as an ODE ``dy/dt = f(y)`` on one flat state vector.

The state ``y`` packs, in order, ``a`` (M, k), ``w`` (M, d), ``p`` (M,), ``Γ`` (k, k; only at
a finite timescale ratio η) and one scalar ``D``, the energy dissipated so far. The field:

* ``dθ_i/dt = −∇_θ δE/δµ(θ_i) = −(1/p_i) ∂E/∂θ_i`` with the energy ``E = L_N(µ)`` (η = ∞,
  Γ = Γ*(µ), the landscape flow) or ``E = L(µ, Γ)`` at the current Γ (finite η);
* ``dΓ/dt = −η ∂_Γ L(µ, Γ)`` (finite η only);
* ``dp_i/dt = −α p_i (δE/δµ(θ_i) − Σ_j p_j δE/δµ(θ_j))`` with Wasserstein–Fisher–Rao
  birth–death at rate α (else ``dp/dt = 0``);
* ``dD/dt = Σ_i p_i |∇_θ δE/δµ(θ_i)|² + α Σ_i p_i δE/δµ(θ_i)² + η ‖∂_Γ L‖²``, the
  dissipation rate, so that the energy identity reads ``E(t) − E(0) + D(t) = 0`` along exact
  solutions; integrating ``D`` with the same scheme makes the numerical defect
  ``E(y_n) − E(y_0) + D_n`` a global error of the integrator's order.

One reverse-mode pass through the moments gives ``∂E/∂(a, w, p, Γ)``; ``∂E/∂p_i = G(θ_i)``
because ``L`` extends linearly in µ to finite measures (docs/theory.md §5). For implicit
integration :meth:`ParticleFlow.linearize` keeps that pass's graph and returns the exact
Jacobian-vector product ``v ↦ (∂f/∂y) v`` (every row, ``D``'s included), never a matrix.

Two engines compute the same field: ``"reference"``, the autograd path above, and ``"fast"``
(the default), the closed forms of :mod:`.fast_field` (exact backend without a bias column,
``N = ∞``: erf/ReLU kernels in closed form, every other activation through its Mehler series
in closed form; tested against the reference to rounding). Where the closed forms do not
apply, ``"fast"`` runs the reference path: :attr:`ParticleFlow.engine` says which one runs. On
the ``monte_carlo`` backend ``"fast"`` runs :mod:`.sampled_field` (GEMMs on the fixed sample; engine ``"sampled"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..landscape import AttentionLandscape
from .config import ENGINES
from .fast_field import FastEvaluation, FastField, unsupported
from .sampled_field import SampledField
from .sampled_field import unsupported as sampled_unsupported

__all__ = ["Layout", "FieldValue", "Linearization", "ParticleFlow"]


@dataclass(frozen=True)
class Layout:
    """Where each part of the flat state lives.

    Attributes:
        m: particles ``M``; k: features; d: columns of ``w``; gamma: whether Γ is in the state.
    """

    m: int
    k: int
    d: int
    gamma: bool

    @property
    def size(self) -> int:
        """Length of the flat state."""
        return self.m * (self.k + self.d + 1) + (self.k * self.k if self.gamma else 0) + 1

    def pack(self, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor, gamma: torch.Tensor | None, dissipated) -> torch.Tensor:
        """Flat state from ``a`` (M, k), ``w`` (M, d), ``p`` (M,), ``Γ`` (k, k) or None, and ``D``."""
        parts = [a.reshape(-1), w.reshape(-1), p.reshape(-1)]
        if self.gamma:
            parts.append(gamma.reshape(-1))
        parts.append(torch.as_tensor(dissipated, dtype=a.dtype, device=a.device).reshape(1))
        return torch.cat(parts)

    def unpack(self, y: torch.Tensor):
        """``(a, w, p, Γ or None, D)`` as views of ``y`` (shapes (M, k), (M, d), (M,), (k, k), ())."""
        m, k, d = self.m, self.k, self.d
        i = 0
        a = y[i : i + m * k].reshape(m, k)
        i += m * k
        w = y[i : i + m * d].reshape(m, d)
        i += m * d
        p = y[i : i + m]
        i += m
        gamma = None
        if self.gamma:
            gamma = y[i : i + k * k].reshape(k, k)
            i += k * k
        return a, w, p, gamma, y[i]

    def error_mask(self, y: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the components that enter the adaptive error norm (all but ``D``)."""
        mask = torch.ones_like(y, dtype=torch.bool)
        mask[-1] = False
        return mask


@dataclass(frozen=True)
class FieldValue:
    """The field at one state, with the diagnostics the trajectory records.

    Attributes:
        dy: tensor of the state's shape, ``f(y)``.
        energy: ``E`` (``L_N(µ)`` at η = ∞, ``L(µ, Γ)`` otherwise).
        loss: ``L_N(µ)`` (Γ optimised instantly).
        grad_norm: ``‖∇_θ δE/δµ‖_{L²(µ)}``, the stationarity residual of the flow.
        rate: ``−dE/dt`` predicted by the energy identity.
        first_variation: array of shape (M,), ``δE/δµ(θ_i)``.
        sigma_min, sigma_max: extreme eigenvalues of ``Σ_µµ``.
    """

    dy: torch.Tensor
    energy: float
    loss: float
    grad_norm: float
    rate: float
    first_variation: np.ndarray
    sigma_min: float
    sigma_max: float

    @property
    def finite(self) -> bool:
        """Whether every number here is finite."""
        scalars = (self.energy, self.loss, self.grad_norm, self.rate, self.sigma_min, self.sigma_max)
        dy = self.dy.detach()
        finite = np.isfinite(dy.numpy()).all() if dy.device.type == "cpu" else torch.isfinite(dy).all()  # numpy: a tenth of torch's cost on a tiny state
        return bool(finite) and all(math.isfinite(x) for x in scalars)


@dataclass(frozen=True)
class Linearization:
    """The field at one state and its Jacobian there (:meth:`ParticleFlow.linearize`).

    Attributes:
        value: the field with its diagnostics.
        jvp: ``v ↦ (∂f/∂y)(y) v`` for ``v`` of the state's shape (the ``D`` entry of ``v`` is ignored).
    """

    value: FieldValue
    jvp: Callable[[torch.Tensor], torch.Tensor]


class ParticleFlow:
    """The vector field ``f`` of the particle flow.

    Args:
        landscape: the attention landscape.
        layout: the state layout (``layout.gamma`` iff η is finite).
        timescale_ratio: η (``math.inf`` for the landscape flow).
        wfr_rate: α of the Wasserstein–Fisher–Rao weight flow, or 0 for fixed weights.
        engine: ``"fast"`` (closed forms where they apply, else the reference) or ``"reference"``.

    Attributes:
        engine: the engine that runs, ``"fast"``, ``"sampled"`` (``"fast"`` asked for on the
            ``monte_carlo`` backend: :mod:`.sampled_field`) or ``"reference"``.
        fallback: why ``"fast"`` was asked for but the reference runs (one line), else None.

    Raises:
        ValueError: when η is finite but the layout has no Γ, or the reverse; an unknown engine.
    """

    def __init__(
        self,
        landscape: AttentionLandscape,
        layout: Layout,
        timescale_ratio: float = math.inf,
        wfr_rate: float = 0.0,
        engine: str = "fast",
    ):
        if layout.gamma == math.isinf(timescale_ratio):
            raise ValueError("the state carries Γ exactly when the timescale ratio is finite.")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
        self.landscape = landscape
        self.layout = layout
        self.eta = timescale_ratio
        self.alpha = wfr_rate
        self.evaluations = 0
        self.jacobian_products = 0
        self.fallback = unsupported(landscape) if engine == "fast" else None
        self._fast = None
        if engine == "fast" and self.fallback is None:
            self._fast = FastField(landscape, layout.m, layout.k, layout.d, layout.gamma, timescale_ratio, wfr_rate)
        elif engine == "fast" and sampled_unsupported(landscape) is None:  # the monte_carlo backend: GEMMs (.sampled_field)
            self._fast, self.fallback = SampledField(landscape, layout.m, layout.k, layout.d, layout.gamma, self._assemble), None
        self.engine = "reference" if self._fast is None else "sampled" if isinstance(self._fast, SampledField) else "fast"

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        """``f(y)``, a tensor of the state's shape."""
        return self._field(y)[0]

    def energy(self, y: torch.Tensor) -> float:
        """``E`` at the state ``y`` (no derivatives)."""
        if self._takes_fast(y):
            return self._fast.energy(np.ascontiguousarray(y.detach().numpy()))
        a, w, p, gamma, _ = self.layout.unpack(y.detach())
        with torch.no_grad():
            moments = self.landscape.moments(a, w, p)
            if gamma is None:
                return float(self.landscape.loss_from_moments(*moments))
            return float(self.landscape.loss_with_gamma_from_moments(gamma, *moments))

    def evaluate(self, y: torch.Tensor) -> FieldValue:
        """``f(y)`` with the diagnostics of :class:`FieldValue`."""
        dy, value = self._field(y)
        return value(dy)

    def linearize(self, y: torch.Tensor) -> Linearization:
        """``f(y)`` with its diagnostics and the exact Jacobian-vector product ``v ↦ (∂f/∂y) v``.

        The energy's gradient graph is kept, so each product costs one backward pass (the
        Hessian-vector product ``∇²E·v``) plus a forward-mode pass through the cheap algebra
        that turns ``∇E`` into ``f`` (divisions by ``p``, the birth–death rate, ``dD/dt``).
        """
        if self._takes_fast(y):
            return self._fast_linearization(y)
        grads, leaves, energy, moments, p = self._gradients(y, create_graph=True)
        detached = tuple(g.detach() for g in grads)
        dy, v, delta = self._assemble(p, detached)
        value = self._value(dy, v, delta, energy, moments, p)

        def jvp(v: torch.Tensor) -> torch.Tensor:
            self.jacobian_products += 1
            va, vw, vp, vgamma, _ = self.layout.unpack(v)
            tangents = [va, vw, vp] + ([vgamma] if vgamma is not None else [])
            hv = torch.autograd.grad(grads, leaves, tangents, retain_graph=True, allow_unused=True, materialize_grads=True)
            return torch.func.jvp(lambda p_, *g_: self._assemble(p_, g_)[0], (p, *detached), (vp, *hv))[1]

        return Linearization(value=value, jvp=jvp)

    def _field(self, y: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], FieldValue]]:
        """``(f(y), value)``, ``value(f(y))`` its :class:`FieldValue`: the one path of :meth:`__call__` and :meth:`evaluate`."""
        if self._takes_fast(y):
            fast = self._fast_evaluation(y)
            return torch.from_numpy(fast.dy), lambda dy: self._fast_value(dy, fast)
        grads, _, energy, moments, p = self._gradients(y)
        with torch.no_grad():
            dy, v, delta = self._assemble(p, grads)
        return dy, lambda dy_: self._value(dy_, v, delta, energy, moments, p)

    def _takes_fast(self, y: torch.Tensor) -> bool:
        """Whether ``y`` goes through the closed forms: the fast engine runs and ``y`` is a CPU float64 tensor."""
        return self._fast is not None and y.dtype == torch.float64 and y.device.type == "cpu"

    def _fast_value(self, dy: torch.Tensor, fast: FastEvaluation) -> FieldValue:
        """The :class:`FieldValue` of a closed-form evaluation whose field is ``dy``."""
        return FieldValue(
            dy=dy,
            energy=fast.energy,
            loss=fast.loss,
            grad_norm=math.sqrt(max(fast.grad_sq, 0.0)),
            rate=float(dy[-1]),
            first_variation=fast.first_variation,
            sigma_min=fast.sigma_min,
            sigma_max=fast.sigma_max,
        )

    def _fast_evaluation(self, y: torch.Tensor, keep: bool = False) -> FastEvaluation:
        """The closed-form evaluation at ``y`` (``keep``: with what its JVP needs); a singular ``Σ_µµ`` raises torch's LinAlgError."""
        self.evaluations += 1
        state = np.ascontiguousarray(y.detach().numpy())
        try:
            return self._fast.linearize(state) if keep else self._fast.evaluate(state)
        except np.linalg.LinAlgError as err:
            raise torch.linalg.LinAlgError(f"Σ_µµ could not be solved: {err}") from None

    def _fast_linearization(self, y: torch.Tensor) -> Linearization:
        """:meth:`linearize` by the closed forms (:meth:`.fast_field.FastField.jvp`)."""
        fast = self._fast_evaluation(y, keep=True)

        def jvp(v: torch.Tensor) -> torch.Tensor:
            self.jacobian_products += 1
            return torch.from_numpy(self._fast.jvp(fast, np.ascontiguousarray(v.detach().numpy())))

        return Linearization(value=self._fast_value(torch.from_numpy(fast.dy), fast), jvp=jvp)

    def _gradients(self, y: torch.Tensor, create_graph: bool = False):
        """``∂E/∂(a, w, p[, Γ])`` at ``y``, with the leaves, ``E``, the detached moments and ``p``."""
        self.evaluations += 1
        a, w, p, gamma, _ = self.layout.unpack(y.detach())
        leaves = [a.clone().requires_grad_(True), w.clone().requires_grad_(True), p.clone().requires_grad_(True)]
        if gamma is not None:
            leaves.append(gamma.clone().requires_grad_(True))
        with torch.enable_grad():
            moments = self.landscape.moments(*leaves[:3])
            if gamma is None:
                energy = self.landscape.loss_from_moments(*moments)
            else:
                energy = self.landscape.loss_with_gamma_from_moments(leaves[3], *moments)
            grads = torch.autograd.grad(energy, leaves, create_graph=create_graph)
        moments = tuple(m.detach() if m is not None else None for m in moments)
        return grads, leaves, energy.detach(), moments, p

    def _assemble(self, p: torch.Tensor, grads) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The field ``f`` from the weights ``p`` (M,) and ``∂E/∂(a, w, p[, Γ])``.

        Returns ``(dy, v, δ)``: the field (the state's shape), the velocities ``∇_θ δE/δµ``
        of shape (M, k + d) and the first variation ``δE/δµ(θ_i)`` of shape (M,). Pure
        algebra, so forward-mode differentiable (:meth:`linearize`).
        """
        v = torch.cat([grads[0], grads[1]], dim=1) / p[:, None]
        g = grads[2]
        delta = g - (p * g).sum() / p.sum()
        rate = (p * (v * v).sum(-1)).sum()
        dp = torch.zeros_like(p)
        if self.alpha > 0:
            dp = -self.alpha * p * delta
            rate = rate + self.alpha * (p * delta * delta).sum()
        dgamma = None
        if self.layout.gamma:
            dgamma = -self.eta * grads[3]
            rate = rate + self.eta * (grads[3] * grads[3]).sum()
        k = self.layout.k
        return self.layout.pack(-v[:, :k], -v[:, k:], dp, dgamma, rate), v, delta

    def _value(self, dy: torch.Tensor, v: torch.Tensor, delta: torch.Tensor, energy: torch.Tensor, moments, p: torch.Tensor) -> FieldValue:
        with torch.no_grad():
            loss = float(self.landscape.loss_from_moments(*moments)) if self.layout.gamma else float(energy)
            eig = torch.linalg.eigvalsh(moments[0])
            grad_sq = (p * (v * v).sum(-1)).sum()
        return FieldValue(
            dy=dy,
            energy=float(energy),
            loss=loss,
            grad_norm=float(torch.sqrt(torch.clamp(grad_sq, min=0.0))),
            rate=float(dy[-1]),
            first_variation=delta.cpu().numpy(),
            sigma_min=float(eig[0]),
            sigma_max=float(eig[-1]),
        )
