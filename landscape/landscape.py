r"""The attention landscape ``L_N(µ)`` of docs/theory.md §4–5 on particle measures.

:class:`AttentionLandscape` ties a teacher, an expectation backend, label noise ``τ`` and
a prompt length ``N`` (``math.inf`` for the paper's main setting) together and computes,
as differentiable torch functions of ``(a, w, p)``:

* the second moments, ``Γ*(µ)``, ``L(µ, Γ)``, ``L_N(µ)`` and ``L_∞(µ)``;
* the first variation ``δL/δµ(θ)`` at any batch of probe neurons, by the chain rule
  through the moments (``G(θ) = ⟨∂L/∂Σ, dΣ/dε⟩``, exact for every ``N``), and its
  gradient ``∇_θ δL/δµ`` (the Wasserstein velocity);
* the particle objective ``F(θ_1, …, θ_M) = L(Σ p_i δ_{θ_i})`` as a pure function of one
  flat, particle-major vector, ready for ``torch.func``.

:meth:`AttentionLandscape.evaluate` gathers all of it for a :class:`ParticleMeasure`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .model.expectations import Moments
from .model.kernels import HermiteQuadrature
from .model.measure import ParticleMeasure
from .model.teacher import Teacher

__all__ = ["AttentionLandscape", "Evaluation", "SingularMomentError", "PrecisionWarning", "DEFAULT_SINGULAR_RTOL"]

#: Σ_µµ counts as singular when λ_min(Σ_µµ) ≤ DEFAULT_SINGULAR_RTOL · λ_max(Σ_µµ)
#: (losses then lose about ``eps · cond ≈ 1e-6`` relative accuracy).
DEFAULT_SINGULAR_RTOL = 1e-10
#: groups of the delete-a-group jackknife that estimates sampling errors.
JACKKNIFE_GROUPS = 10
#: largest error ratio per doubling of the Mehler order used to extrapolate truncation errors
#: (0.9: an estimate at most 10× the last difference).
MAX_DOUBLING_RATE = 0.9


class SingularMomentError(ValueError):
    """Σ_µµ is singular (below the relative threshold): the landscape is undefined."""


class PrecisionWarning(UserWarning):
    """A landscape computed in less than float64: certificates (g near eps, λ_min signs) need float64."""


@dataclass(frozen=True)
class Evaluation:
    """Everything ``landscape evaluate`` reports about one measure.

    Attributes:
        loss: ``L_N(µ)`` at the problem's prompt length.
        loss_inf: ``L_∞(µ)``.
        loss_star: the known minimum ``L*`` (``½τ²`` if realizable at ``N = ∞``, or the
            stated value), else None.
        grad_norm: stationarity residual ``‖∇_θ δL/δµ‖_{L²(µ)}``.
        sigma_min: ``λ_min(Σ_µµ)``; sigma_cond: its condition number.
        gamma: array of shape (k, k), ``Γ*(µ)`` (minimal-norm when not unique).
        first_variation: array of shape (Q,) at the probes, or None.
        prompt_length: ``N`` (``math.inf`` for infinite).
        expectation: the backend's settings.
        ridge: the ridge ``λ`` added to Σ_µµ (0: none; when set, ``sigma_cond`` is that of
            ``Σ_µµ + λI``, the matrix actually inverted, and every loss is the ridge one).
        errors: per reported number, its error estimate by source
            (:meth:`AttentionLandscape.estimate_errors`), or None when not asked for.
        loss_bounds: the a-priori bounds ``(½τ², ½(tr Σ_°° + τ²))`` of the losses.
    """

    loss: float
    loss_inf: float
    loss_star: float | None
    grad_norm: float
    sigma_min: float
    sigma_cond: float
    gamma: np.ndarray
    first_variation: np.ndarray | None
    prompt_length: float
    expectation: dict
    ridge: float = 0.0
    errors: dict | None = None
    loss_bounds: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict (``prompt_length`` is ``"inf"`` or an integer; ``ridge`` only when used)."""
        out = {
            "loss": self.loss,
            "loss_inf": self.loss_inf,
            "loss_star": self.loss_star,
            "grad_norm": self.grad_norm,
            "sigma_min": self.sigma_min,
            "sigma_cond": self.sigma_cond,
            "gamma": self.gamma.tolist(),
            "prompt_length": "inf" if math.isinf(self.prompt_length) else int(self.prompt_length),
            "expectation": self.expectation,
        }
        if self.first_variation is not None:
            out["first_variation"] = self.first_variation.tolist()
        if self.ridge:
            out["ridge"] = self.ridge
        if self.errors is not None:
            out["errors"] = self.errors
        return out


class AttentionLandscape:
    """The landscape ``µ ↦ L_N(µ)`` with ``Γ`` optimised instantly.

    Args:
        teacher: the true features ``f°``.
        expectation: an expectation backend (:mod:`landscape.model.expectations`).
        noise: label-noise standard deviation ``τ ≥ 0``.
        prompt_length: ``N ≥ 1`` or ``math.inf``.
        singular_rtol: relative threshold below which Σ_µµ counts as singular.
        loss_star: a known minimum value, if the user states one.
        ridge: ``λ ≥ 0`` (default 0, off): Σ_µµ is replaced by ``Σ_µµ + λI`` wherever the
            landscape uses it, i.e. ``L_λ(µ) = min_Γ L(µ, Γ) + ½λ tr(ΓᵀΓ A_N)``, a Tikhonov
            guard for near-singular Σ_µµ. ``L_λ ≥ L``, it breaks the GL(k) invariance, and
            ``L*`` is then unknown unless stated; evaluations report ``ridge``.

    Raises:
        ValueError: on a negative noise, a prompt length below 1, a bad threshold or ridge.

    Warns:
        PrecisionWarning: when the backend's dtype is not float64.
    """

    def __init__(
        self,
        teacher: Teacher,
        expectation,
        noise: float = 0.0,
        prompt_length: float = math.inf,
        singular_rtol: float = DEFAULT_SINGULAR_RTOL,
        loss_star: float | None = None,
        ridge: float = 0.0,
    ) -> None:
        if not (math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be a finite number ≥ 0, got {noise!r}.")
        if not (prompt_length == math.inf or (float(prompt_length).is_integer() and prompt_length >= 1)):
            raise ValueError(f"prompt_length must be an integer ≥ 1 or inf, got {prompt_length!r}.")
        if not (0 < singular_rtol < 1):
            raise ValueError(f"singular_rtol must lie in (0, 1), got {singular_rtol!r}.")
        if not (math.isfinite(ridge) and ridge >= 0):
            raise ValueError(f"ridge must be a finite number ≥ 0, got {ridge!r}.")
        if expectation.dtype != torch.float64:
            warnings.warn(
                f"the landscape is computed in {expectation.dtype}; certificates (stationarity near "
                "machine precision, signs of small eigenvalues, L − L*) need torch.float64.",
                PrecisionWarning,
                stacklevel=2,
            )
        self.ridge = float(ridge)
        self.teacher = teacher
        self.expectation = expectation
        self.noise = float(noise)
        self.prompt_length = prompt_length if math.isinf(prompt_length) else int(prompt_length)
        self.singular_rtol = singular_rtol
        self.stated_loss_star = loss_star

    # ----------------------------------------------------------------- basic facts
    @property
    def finite_prompt(self) -> bool:
        """Whether ``N < ∞`` (then ``K_µ`` enters)."""
        return not math.isinf(self.prompt_length)

    @property
    def dtype(self) -> torch.dtype:
        return self.expectation.dtype

    @property
    def device(self) -> torch.device:
        return self.expectation.device

    @property
    def bias(self) -> bool:
        return self.expectation.bias

    @property
    def input_dim(self) -> int:
        """Columns of a particle's ``w`` (``d``, or ``d + 1`` with a bias)."""
        return self.teacher.dim + int(self.bias)

    def check_measure(self, measure: ParticleMeasure, features: int | None = None) -> None:
        """Raise ``ValueError`` unless ``measure`` fits this problem (``w`` columns, and ``k`` if given)."""
        if measure.dim != self.input_dim:
            extra = " (d + 1: the bias is the last column)" if self.bias else ""
            raise ValueError(f"measure w has {measure.dim} columns, the problem needs {self.input_dim}{extra}.")
        if features is not None and measure.features != features:
            raise ValueError(f"measure a has {measure.features} columns, the problem has features = {features}.")

    def loss_star(self, measure: ParticleMeasure | None = None) -> float | None:
        """The known minimum: the stated one, else ``½τ²`` when realizable at ``N = ∞``, else None.

        Realizable means: same activation as the teacher, ``M ≥ L`` and ``k ≥ k°``.
        """
        if self.stated_loss_star is not None:
            return float(self.stated_loss_star)
        if self.finite_prompt or measure is None or self.ridge:
            return None
        realizable = (
            self.expectation.activation.name == self.teacher.activation.name
            and measure.size >= self.teacher.neurons
            and measure.features >= self.teacher.features
        )
        return 0.5 * self.noise**2 if realizable else None

    # ------------------------------------------------------------ moment level
    def moments(self, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor) -> Moments:
        """Σ_µµ (k, k), Σ_µ° (k, k°) and, at finite N, ``Q_µ = E[|f°|² h hᵀ]`` (k, k)."""
        return self.expectation.moments(a, w, p, fourth=self.finite_prompt)

    def _attention_covariance(self, sigma_mm, sigma_mt, fourth) -> torch.Tensor:
        """``A_N = E[S Sᵀ] = (1 − 1/N) Σ_µ°Σ_°µ + K_µ/N`` with ``K_µ = Q_µ + τ² Σ_µµ``."""
        b = sigma_mt @ sigma_mt.T
        if not self.finite_prompt:
            return b
        n = float(self.prompt_length)
        return (1.0 - 1.0 / n) * b + (fourth + self.noise**2 * sigma_mm) / n

    def _ridged(self, sigma_mm: torch.Tensor) -> torch.Tensor:
        """``Σ_µµ + λI`` (``Σ_µµ`` itself when the ridge is off)."""
        if not self.ridge:
            return sigma_mm
        return sigma_mm + self.ridge * torch.eye(sigma_mm.shape[0], dtype=sigma_mm.dtype, device=sigma_mm.device)

    def loss_from_moments(self, sigma_mm, sigma_mt, fourth=None) -> torch.Tensor:
        """``L_N`` as a function of the moments (see :meth:`moments`)."""
        sigma_tt = self.expectation.sigma_tt
        solved = torch.linalg.solve(self._ridged(sigma_mm), sigma_mt)  # Σ_µµ⁻¹ Σ_µ°
        if self.finite_prompt:
            a_n = self._attention_covariance(sigma_mm, sigma_mt, fourth)
            # tr(Σ_°µ Σ⁻¹ Σ_µ° · Σ_°µ A_N⁻¹ Σ_µ°)
            explained = torch.trace((solved.T @ sigma_mt) @ (sigma_mt.T @ torch.linalg.solve(a_n, sigma_mt)))
        else:
            explained = torch.trace(sigma_mt.T @ solved)
        return 0.5 * (torch.trace(sigma_tt) + self.noise**2 - explained)

    def loss_with_gamma_from_moments(self, gamma, sigma_mm, sigma_mt, fourth=None) -> torch.Tensor:
        """``L(µ, Γ) = ½[tr Σ_°° + τ² − 2 tr(Σ_°µ Γ Σ_µ°) + tr(Γᵀ Σ_µµ Γ A_N)]``."""
        a_n = self._attention_covariance(sigma_mm, sigma_mt, fourth)
        sigma_tt = self.expectation.sigma_tt
        cross = torch.trace(sigma_mt.T @ gamma @ sigma_mt)
        quad = torch.trace(gamma.T @ self._ridged(sigma_mm) @ gamma @ a_n)
        return 0.5 * (torch.trace(sigma_tt) + self.noise**2 - 2.0 * cross + quad)

    def gamma_from_moments(self, sigma_mm, sigma_mt, fourth=None) -> torch.Tensor:
        """``Γ* = Σ_µµ⁻¹ Σ_µ°Σ_°µ A_N⁺`` (k, k): the minimal-norm minimiser of ``L(µ, ·)``."""
        a_n = self._attention_covariance(sigma_mm, sigma_mt, fourth)
        b = sigma_mt @ sigma_mt.T
        return torch.linalg.solve(self._ridged(sigma_mm), b) @ torch.linalg.pinv(a_n, hermitian=True)

    # ---------------------------------------------------------- particle level
    def loss(self, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``L_N(µ)`` for ``a`` (M, k), ``w`` (M, d), ``p`` (M,) (``p`` need not sum to 1).

        Raises:
            SingularMomentError: Σ_µµ singular (:meth:`check_sigma`), also under ``torch.func``.
        """
        moments = self.moments(a, w, p)
        self.check_sigma(moments.sigma_mm)
        return self.loss_from_moments(*moments)

    def loss_inf(self, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``L_∞(µ) = ½[tr Σ_°° + τ² − tr(Σ_°µ Σ_µµ⁻¹ Σ_µ°)]``.

        Raises:
            SingularMomentError: Σ_µµ singular (:meth:`check_sigma`).
        """
        sigma_mm, sigma_mt, _ = self.expectation.moments(a, w, p)
        self.check_sigma(sigma_mm)
        explained = torch.trace(sigma_mt.T @ torch.linalg.solve(self._ridged(sigma_mm), sigma_mt))
        return 0.5 * (torch.trace(self.expectation.sigma_tt) + self.noise**2 - explained)

    def loss_with_gamma(self, a, w, p, gamma: torch.Tensor) -> torch.Tensor:
        """``L(µ, Γ)`` for any ``Γ`` of shape (k, k)."""
        return self.loss_with_gamma_from_moments(gamma, *self.moments(a, w, p))

    def gamma_star(self, a, w, p) -> torch.Tensor:
        """``Γ*(µ)``, shape (k, k).

        Raises:
            SingularMomentError: Σ_µµ singular (:meth:`check_sigma`).
        """
        moments = self.moments(a, w, p)
        self.check_sigma(moments.sigma_mm)
        return self.gamma_from_moments(*moments)

    def check_sigma(self, sigma_mm: torch.Tensor) -> tuple[float, float]:
        """``(λ_min(Σ_µµ), cond(Σ_µµ + λI))`` of the (k, k) ``sigma_mm``, or :class:`SingularMomentError`.

        The particle-level losses call it, so no loss is returned at a singular Σ_µµ. It
        reads detached values (one ``eigvalsh`` of a k×k matrix): inside ``torch.func``
        transforms the wrappers are peeled off first (under ``vmap`` every batch member is
        judged; the worst is reported), so it adds nothing to any derivative.

        Raises:
            SingularMomentError: when ``λ_min + λ ≤ singular_rtol · (λ_max + λ)``; the
                message names λ_min, λ_max and the condition number.
        """
        eig = torch.linalg.eigvalsh(_plain(sigma_mm).to(torch.float64))
        lo, hi = eig[..., 0].reshape(-1), eig[..., -1].reshape(-1)
        worst = int(torch.argmin((lo + self.ridge) / (hi + self.ridge).clamp(min=torch.finfo(torch.float64).tiny)))
        return self._judge_sigma(float(lo[worst]), float(hi[worst]))

    def raw_first_variation(
        self, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor, probe_a: torch.Tensor, probe_w: torch.Tensor
    ) -> torch.Tensor:
        """``G(θ_q) = d/dε L(µ + ε δ_{θ_q})|₀`` for probes ``probe_a`` (Q, k), ``probe_w`` (Q, d); shape (Q,).

        Exact at every ``N``: the derivative of ``L`` with respect to the moments, contracted
        with the moments' derivative along ``δ_θ``. Differentiable in the probes.
        """
        return self._first_variation_map(a, w, p)(probe_a, probe_w)

    def _first_variation_map(self, a, w, p) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        with torch.enable_grad():
            moments = [m.detach().requires_grad_(True) for m in self.moments(a.detach(), w.detach(), p.detach()) if m is not None]
            grads = torch.autograd.grad(self.loss_from_moments(*moments), moments)
        g_mm = grads[0] + grads[0].T
        g_mt = grads[1]
        g_q = grads[2] + grads[2].T if self.finite_prompt else None
        a0, w0, p0 = a.detach(), w.detach(), p.detach()

        def first_variation(probe_a: torch.Tensor, probe_w: torch.Tensor) -> torch.Tensor:
            m = self.expectation.probe_moments(probe_w, a0, w0, p0, fourth=self.finite_prompt)
            value = ((probe_a @ g_mm) * m.with_model).sum(-1) + ((probe_a @ g_mt) * m.with_teacher).sum(-1)
            if g_q is not None:
                value = value + ((probe_a @ g_q) * m.fourth).sum(-1)
            return value

        return first_variation

    def first_variation(self, a, w, p, probe_a, probe_w) -> torch.Tensor:
        """``δL/δµ(θ_q) = G(θ_q) − ∫ G dµ`` at probes (Q, k), (Q, d); shape (Q,)."""
        fv = self._first_variation_map(a, w, p)
        mean = (p * fv(a.detach(), w.detach())).sum()
        return fv(probe_a, probe_w) - mean

    def velocity(self, a, w, p, probe_a=None, probe_w=None) -> torch.Tensor:
        """``∇_θ δL/δµ`` at the probes (default: at the particles); shape (Q, k + d).

        At particle ``i`` this equals ``(1/p_i) ∂F/∂θ_i`` (the Wasserstein velocity is its negative).
        """
        if probe_a is None:
            probe_a, probe_w = a, w
        fv = self._first_variation_map(a, w, p)
        qa = probe_a.detach().requires_grad_(True)
        qw = probe_w.detach().requires_grad_(True)
        with torch.enable_grad():
            ga, gw = torch.autograd.grad(fv(qa, qw).sum(), (qa, qw))
        return torch.cat([ga, gw], dim=1)

    def stationarity(self, a, w, p) -> torch.Tensor:
        """``‖∇_θ δL/δµ‖_{L²(µ)} = (Σ_i p_i |∇_θ δL/δµ(θ_i)|²)^{1/2}``."""
        v = self.velocity(a, w, p)
        return torch.sqrt((p * (v * v).sum(-1)).sum())

    def objective(self, measure: ParticleMeasure) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
        """The particle objective ``F`` at fixed weights ``p``, and the measure's flat parameters.

        Returns:
            ``(F, theta)``: ``F`` maps a tensor of shape (M·(k+d),) (particle-major
            ``[a_1, w_1, a_2, …]``) to a scalar, built from torch operations only, so that
            ``torch.func.grad(F)``, ``hessian`` and ``jvp`` apply; ``theta`` is µ's point.
        """
        self.check_measure(measure)
        a, w, p = measure.tensors(self.dtype, self.device)
        m, k = measure.size, measure.features

        def particle_objective(theta: torch.Tensor) -> torch.Tensor:
            parts = theta.reshape(m, -1)
            return self.loss(parts[:, :k], parts[:, k:], p)

        return particle_objective, torch.cat([a, w], dim=1).reshape(-1)

    # ------------------------------------------------------------------ report
    def conditioning(self, measure: ParticleMeasure) -> tuple[float, float]:
        """``(λ_min(Σ_µµ), cond(Σ_µµ + λI))`` (``λ`` the ridge, 0 by default).

        Raises:
            SingularMomentError: when ``λ_min + λ ≤ singular_rtol · (λ_max + λ)``; the
                message names λ_min, λ_max and the condition number.
        """
        a, w, p = measure.tensors(self.dtype, self.device)
        with torch.no_grad():
            return self.check_sigma(self.expectation.moments(a, w, p).sigma_mm)

    def _judge_sigma(self, lo: float, hi: float) -> tuple[float, float]:
        """``(lo, cond)`` for the extreme eigenvalues of Σ_µµ, or :class:`SingularMomentError`."""
        lo_r, hi_r = lo + self.ridge, hi + self.ridge
        if not (hi_r > 0 and lo_r > self.singular_rtol * hi_r):
            cond = hi_r / lo_r if lo_r > 0 else math.inf
            ridge = f" + ridge {self.ridge:g}" if self.ridge else ""
            raise SingularMomentError(
                f"Σ_µµ{ridge} is singular: λ_min = {lo:.3e}, λ_max = {hi:.3e}, condition number {cond:.3e} "
                f"(threshold λ_min > {self.singular_rtol:g}·λ_max)."
            )
        return lo, hi_r / lo_r

    def evaluate(
        self,
        measure: ParticleMeasure,
        probes: tuple[np.ndarray, np.ndarray] | None = None,
        errors: bool = False,
    ) -> Evaluation:
        """Loss, Γ*, stationarity, conditioning and (optionally) the first variation at probes.

        Args:
            measure: the particle measure.
            probes: ``(a, w)`` arrays of shapes (Q, k), (Q, d), or None.
            errors: also estimate the error of every number (:meth:`estimate_errors`).

        Raises:
            ValueError: when the measure or the probes do not fit the problem, or Σ_µµ is
                singular (:class:`SingularMomentError`).
        """
        self.check_measure(measure)
        probe_tensors = None
        if probes is not None:
            qa, qw = probes
            if qa.ndim != 2 or qw.ndim != 2 or qa.shape[0] != qw.shape[0]:
                raise ValueError(f"probes a and w must be 2-D with one row per probe, got shapes {qa.shape} and {qw.shape}.")
            if qa.shape[1] != measure.features or qw.shape[1] != measure.dim:
                raise ValueError(
                    f"probes must have shapes (Q, {measure.features}) and (Q, {measure.dim}), got {qa.shape} and {qw.shape}."
                )
            probe_tensors = (
                torch.as_tensor(qa, dtype=self.dtype, device=self.device),
                torch.as_tensor(qw, dtype=self.dtype, device=self.device),
            )
        values = self._quantities(measure, probe_tensors)
        bad = [name for name, value in values.items() if value is not None and not np.all(np.isfinite(value))]
        if bad:
            raise ValueError(
                f"the evaluation overflowed: {', '.join(bad)} not finite (λ_min(Σ_µµ) = {values['sigma_min']:.3e}, "
                f"condition number {values['sigma_cond']:.3e}); rescale the weights, data or noise."
            )
        return Evaluation(
            loss=values["loss"],
            loss_inf=values["loss_inf"],
            loss_star=self.loss_star(measure),
            grad_norm=values["grad_norm"],
            sigma_min=values["sigma_min"],
            sigma_cond=values["sigma_cond"],
            gamma=values["gamma"],
            first_variation=values["first_variation"],
            prompt_length=self.prompt_length,
            expectation=self.expectation.describe(),
            ridge=self.ridge,
            errors=self.estimate_errors(measure, probe_tensors, values) if errors else None,
            loss_bounds=self.loss_bounds(),
        )

    def _quantities(self, measure: ParticleMeasure, probes: tuple[torch.Tensor, torch.Tensor] | None) -> dict:
        """The numbers :meth:`evaluate` reports (floats; ``gamma`` (k, k), ``first_variation`` (Q,) or None)."""
        sigma_min, sigma_cond = self.conditioning(measure)
        a, w, p = measure.tensors(self.dtype, self.device)
        fv = None
        if probes is not None:
            with torch.no_grad():
                fv = self.first_variation(a, w, p, *probes).cpu().numpy()
        with torch.no_grad():
            moments = self.moments(a, w, p)
            loss = float(self.loss_from_moments(*moments))
            loss_inf = float(self.loss_inf(a, w, p))
            gamma = self.gamma_from_moments(*moments).cpu().numpy()
        grad_norm = float(self.stationarity(a, w, p))
        return {
            "loss": loss,
            "loss_inf": loss_inf,
            "grad_norm": grad_norm,
            "sigma_min": sigma_min,
            "sigma_cond": sigma_cond,
            "gamma": gamma,
            "first_variation": fv,
        }

    def loss_bounds(self) -> tuple[float, float]:
        """A-priori bounds ``[½τ², ½(tr Σ_°° + τ²)]`` of every loss (``Γ = 0`` attains the upper one).

        They hold for ``L_N`` at every ``N``, for ``L_∞`` and with a ridge.
        """
        ceiling = 0.5 * (float(torch.trace(self.expectation.sigma_tt)) + self.noise**2)
        return 0.5 * self.noise**2, ceiling

    def with_expectation(self, expectation) -> "AttentionLandscape":
        """This landscape (same τ, N, threshold, L*, ridge) over another expectation backend."""
        return AttentionLandscape(
            self.teacher, expectation, self.noise, self.prompt_length, self.singular_rtol, self.stated_loss_star, self.ridge
        )

    def estimate_errors(
        self, measure: ParticleMeasure, probes: tuple[torch.Tensor, torch.Tensor] | None, values: dict
    ) -> dict[str, dict[str, float]]:
        """An error estimate for each number of :meth:`_quantities` (``values``), by source.

        * ``truncation``: from the Mehler series at orders ``T/2``, ``T``, ``2T``: with
          ``d = |q(T) − q(2T)|``, ``D = |q(T/2) − q(2T)|`` and the rate ``r = d/D ≤ 0.9``
          per doubling, ``d/(1 − r)`` (the sum of the remaining doublings) — the exact
          backend, where a kernel has no closed form; else 0;
        * ``quadrature_step``: ``|q(h) − q(h/2)|·4/3`` — the trapezoid step halved (Richardson
          factor of a second-order rule, the worst case: a kinked σ such as ReLU with a bias);
        * ``sampling``: delete-a-group jackknife standard error over ``JACKKNIFE_GROUPS``
          groups of the sample (the Monte Carlo backend; at finite ``N`` the exact backend's
          ``Q_µ`` sample; else 0);
        * ``total``: their sum.

        Arrays (``gamma``, ``first_variation``) get the largest entrywise estimate.

        Returns:
            ``{quantity: {"truncation", "quadrature_step", "sampling", "total"}}``.

        Raises:
            ValueError: when an estimate is not finite (one line naming the setting), or a
                perturbed evaluation is singular (:class:`SingularMomentError`).
        """
        exp = self.expectation
        truncation = quadrature_step = sampling = None
        if getattr(exp, "uses_quadrature", False):
            quad = exp.quadrature
            finer = self.with_expectation(exp.with_quadrature(HermiteQuadrature(2 * quad.order, quad.step)))
            coarser = self.with_expectation(exp.with_quadrature(HermiteQuadrature(max(quad.order // 2, 1), quad.step)))
            fine = finer._quantities(measure, probes)
            d_fine, d_coarse = _deviation(fine, values), _deviation(coarser._quantities(measure, probes), fine)
            truncation = {name: _doubling_extrapolation(d_fine[name], d_coarse[name]) for name in d_fine}
            halved = HermiteQuadrature(quad.order, quad.step / 2)
            step = _deviation(self.with_expectation(exp.with_quadrature(halved))._quantities(measure, probes), values)
            quadrature_step = {name: 4.0 / 3.0 * value for name, value in step.items()}
        if exp.method == "monte_carlo" or self.finite_prompt:
            samples = exp.samples if exp.method == "monte_carlo" else exp.fourth_samples
            groups = min(JACKKNIFE_GROUPS, samples)
            if groups >= 2:
                runs = [self.with_expectation(e)._quantities(measure, probes) for e in exp.jackknife(groups)]
                sampling = _jackknife_stderr(runs)
        out = {}
        for name, value in values.items():
            if value is None:
                continue
            parts = {
                "truncation": truncation[name] if truncation else 0.0,
                "quadrature_step": quadrature_step[name] if quadrature_step else 0.0,
                "sampling": sampling[name] if sampling else 0.0,
            }
            parts["total"] = sum(parts.values())
            if not math.isfinite(parts["total"]):
                source = next(key for key, value in parts.items() if not math.isfinite(value))
                raise ValueError(
                    f"the {source} error estimate of {name} is not finite: the result does not survive "
                    f"{_PERTURBATION[source]}; {_SETTING[source]}."
                )
            out[name] = parts
        return out


_PERTURBATION = {
    "truncation": "a change of the Mehler order",
    "quadrature_step": "halving the trapezoid step",
    "sampling": "leaving out a tenth of the sample",
}
_SETTING = {
    "truncation": "raise hermite_order",
    "quadrature_step": "lower hermite_step",
    "sampling": "raise samples / fourth_moment_samples",
}


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``'s values as a plain, detached tensor: ``torch.func`` wrappers peeled off.

    A ``vmap`` level leaves its batch dimension in front, so the result is (..., *shape).
    """
    functorch = torch._C._functorch
    while functorch.is_functorch_wrapped_tensor(tensor):
        if functorch.is_batchedtensor(tensor):
            tensor = functorch.get_unwrapped(tensor).movedim(functorch.maybe_get_bdim(tensor), 0)
        else:
            tensor = functorch.get_unwrapped(tensor)
    return tensor.detach()


def _deviation(other: dict, values: dict) -> dict[str, float]:
    """Largest absolute difference per quantity between two :meth:`AttentionLandscape._quantities` results."""
    return {
        name: float(np.max(np.abs(np.asarray(other[name]) - np.asarray(value))))
        for name, value in values.items()
        if value is not None
    }


def _doubling_extrapolation(d: float, big: float) -> float:
    """The error at order ``T`` from ``d = |q(T) − q(2T)|`` and ``big = |q(T/2) − q(2T)|``.

    Errors shrinking by ``r = d/big`` per doubling of the order leave ``d/(1 − r)`` in all
    (``r`` capped at ``MAX_DOUBLING_RATE``: slow or no convergence seen).
    """
    if d == 0.0:
        return 0.0
    r = min(d / big, MAX_DOUBLING_RATE) if big > 0 else MAX_DOUBLING_RATE
    return d / (1.0 - r)


def _jackknife_stderr(runs: list[dict]) -> dict[str, float]:
    """Delete-a-group jackknife standard error per quantity (largest entry for arrays)."""
    g = len(runs)
    out = {}
    for name, first in runs[0].items():
        if first is None:
            continue
        stack = np.stack([np.asarray(run[name], dtype=np.float64) for run in runs])
        spread = ((g - 1) / g * ((stack - stack.mean(axis=0)) ** 2).sum(axis=0)) ** 0.5
        out[name] = float(np.max(spread))
    return out
