r"""The real model trained by SGD on sampled prompts (``[dynamics] scheme = "prompts"``).

The model is the two-layer MLP of docs/theory.md §2 in the mean-field parametrisation,
``h(x) = Σ_i p_i a_i σ(w_i·x)`` (``p_i = 1/M`` for a uniform start), followed by one linear
self-attention layer with parameters ``W^{KQ}``, ``W^{PV}`` on the embedding ``Z``
(:class:`~landscape.model.attention.LinearSelfAttention`). Both are trained jointly on the
empirical prompt loss ``L̂ = (1/B) Σ_b ½ (y_q − ŷ)²`` of a batch of ``B`` prompts of length
``N`` drawn from the problem's input law, teacher and label noise (docs/theory.md §1):
fresh prompts every step (``train_prompts = "online"``) or a batch drawn from a fixed
training set of ``P`` prompts.

**Time scaling.** With ``F(θ_1, …, θ_M) = L(Σ_i p_i δ_{θ_i})``, ``∂F/∂θ_i = p_i ∇_θ δL/δµ(θ_i)``
(docs/theory.md §5). The step of particle ``i`` is therefore ``θ_i ← θ_i − (δt/p_i) ∂L̂/∂θ_i``
(rate ``δt·M`` for uniform weights), whose expectation is ``θ_i − δt ∇_θ δL/δµ(θ_i)`` at
``Γ = Γ(W)``: the explicit Euler step ``δt`` of the Wasserstein flow of docs/theory.md §6, so
the run's time is ``t = step · δt`` (``δt`` = ``learning_rate``) and its loss curve lies on the
landscape flow's time axis. ``W`` moves by ``δt · attention_rate`` times its gradient:
``attention_rate`` is the timescale ratio between ``W`` and the MLP (0 freezes ``W``). The
weights ``p_i`` stay fixed.

**The two-timescale limit** (``attention_rate = "inf"``): after every particle step ``W`` is set
to realise ``Γ*(µ)`` of the new neurons, the exact minimiser of ``L_N(µ, ·)`` (float64, from the
problem's landscape). The particles still train by SGD on the same batches, so this is the model
of the theory's two-timescale limit trained on prompts: beside a finite ``attention_rate`` with the
same seed (the batches do not depend on the parameters) it isolates the attention's lag from the
particles' SGD noise, and beside the landscape flow it isolates that noise.

**Attention start.** ``W`` starts at :meth:`~LinearSelfAttention.from_gamma` of ``Γ*(µ_0)``
(every other entry that reaches the prediction 0), the start of the landscape flow; this is
our choice, which makes the two comparable from ``t = 0``. The two factors of
``Γ = c · (Γᵀ/c)ᵀ`` are balanced, ``c = ‖Γ*(µ_0)‖_F^{1/2}``, so that the curvatures of the loss
along ``W^{PV}_{k+1,k+1}`` and along the block of ``W^{KQ}`` are of one order (with ``c = 1``
and a large ``Γ*``, as at a mean-field start where ``Σ_µµ = O(1/M)``, the first is
``‖Γ*‖²`` times the second and SGD on ``W`` diverges at any useful rate). The
trained read-out is ``Γ(W) = W^{PV}_{k+1,k+1} (W^{KQ}_{:k,:k})ᵀ``
(:meth:`~LinearSelfAttention.gamma`); the other entries of ``W`` that enter ``ŷ`` (the last
row of ``W^{KQ}``, the first ``k`` of the last row of ``W^{PV}``) start at 0 and have zero
expected gradient there (``ŷ`` is odd in ``(β, ε)``), so they move only by SGD noise.

**Rows** (:data:`COLUMNS`). The row of step ``s`` describes the state after ``s`` updates:
``prompt_loss`` and ``prompt_stderr``, the mean and standard error of ``½(y_q − ŷ)²`` over the
batch that step ``s + 1`` trains on (a batch drawn for evaluation after the last step);
``loss`` = ``L_N(µ_s)`` (exact, the problem's landscape at this ``N``), ``energy`` =
``L(µ_s, Γ(W_s))``, ``grad_norm`` = ``‖∇δL_N/δµ‖_{L²(µ)}``, ``sigma_min`` and ``sigma_cond``
of ``Σ_µµ``, and ``gamma_distance`` = ``‖Γ(W_s) − Γ*(µ_s)‖_F``. The exact columns are in
float64 whatever ``precision`` the model trains in.

**Determinism.** The training set and the run's generator are the two children of
``SeedSequence(seed)``. The set is never stored: prompt ``i`` is regenerated on demand from the
``i``-th child of the first (:func:`~landscape.model.attention.indexed_prompts`), so the paper's
10 000 prompts of 1 001 inputs cost no memory and every epoch sees the same prompts. The state
(parameters, step) and the run's generator (which draws the batch's indices, or the online
prompts) are all the future depends on, so a checkpoint (taken between two steps, before the
next batch is drawn) resumes bit for bit.

**Cost.** A step is batched over prompts: the MLP's features of all ``B(N+1)`` inputs in one
matrix product, and the attention's prediction from the query's column alone
(:meth:`~landscape.model.attention.LinearSelfAttention.predict`, O(B N k²)). The exact columns
of a row (``L_N``, the stationarity residual through autograd, ``λ(Σ_µµ)``, ``Γ*``) are
evaluated only on recorded rows (``[dynamics] record_every``). Measured at the paper's sizes
(d = 20, k = 5, M = 500 sigmoid, N = 1000, float64, one thread of the loaded 2-core box,
2026-11-30): a step of ``B = 32`` prompts ≈ 0.7 s (the MLP's 32 032 × 500 features and their
backward pass; the whole score matrix took 1.4 s); a row ≈ 0.7 s with 20 000 fourth-moment
samples for ``Q_µ`` (3 s with the default 200 000, the stationarity residual dominating).
"""

from __future__ import annotations

import math
import time as wallclock
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

from ..io.problem import ProblemSpec
from ..landscape import AttentionLandscape, PrecisionWarning, SingularMomentError
from ..model.attention import LinearSelfAttention, indexed_prompts, prompt_losses, sample_prompts
from ..model.measure import ParticleMeasure
from .config import DynamicsConfig, PromptsConfig
from .simulate import Observer, RunResult
from .trajectory import Trajectory

__all__ = [
    "COLUMNS",
    "PromptState",
    "PromptInfo",
    "PromptTrainer",
    "StepLimit",
    "chunk_prompts",
    "prompt_landscape",
    "simulate_prompts",
    "step_limit",
]

#: trajectory columns of a prompts run (module docstring).
COLUMNS = (
    "step",
    "time",
    "prompt_loss",
    "prompt_stderr",
    "loss",
    "energy",
    "grad_norm",
    "sigma_min",
    "sigma_cond",
    "gamma_distance",
)


@dataclass
class PromptState:
    """The parameters of the model between two steps.

    Attributes:
        a: (M, k); w: (M, d); p: (M,) the fixed weights; w_kq, w_pv: (k+1, k+1) the attention.
        step: SGD steps taken; time: ``step · learning_rate``; h: ``learning_rate``.
    """

    a: torch.Tensor
    w: torch.Tensor
    p: torch.Tensor
    w_kq: torch.Tensor
    w_pv: torch.Tensor
    step: int
    time: float
    h: float

    #: a prompts run has no energy bookkeeping and no perturbations (the checkpoint's fields).
    offset: float = 0.0
    last_kick: float | None = None

    @property
    def y(self) -> torch.Tensor:
        """The flat state ``[a, w, p, W^{KQ}, W^{PV}]`` (row-major), shape (M(k+d+1) + 2(k+1)²,)."""
        return torch.cat([t.reshape(-1) for t in (self.a, self.w, self.p, self.w_kq, self.w_pv)])

    @classmethod
    def from_flat(
        cls, y: np.ndarray, k: int, d: int, step: int, time: float, h: float, dtype: torch.dtype, device: str
    ) -> PromptState:
        """The inverse of :attr:`y` for ``k`` features and ``d`` columns of ``w``.

        Raises:
            ValueError: ``y`` does not fit ``k`` and ``d``.
        """
        size = (k + 1) ** 2
        m, rest = divmod(y.size - 2 * size, k + d + 1)
        if rest or m < 1:
            raise ValueError(f"checkpoint state of length {y.size} does not fit a prompts run with k = {k}, d = {d}.")
        t = torch.as_tensor(np.asarray(y), dtype=dtype, device=device)
        cuts = np.cumsum([0, m * k, m * d, m, size, size])
        a, w, p, kq, pv = (t[i:j] for i, j in zip(cuts[:-1], cuts[1:], strict=True))
        return cls(a.reshape(m, k), w.reshape(m, d), p, kq.reshape(k + 1, k + 1), pv.reshape(k + 1, k + 1), step, time, h)


@dataclass(frozen=True)
class PromptInfo:
    """The exact quantities of the last recorded row (what progress lines show)."""

    loss: float
    grad_norm: float


class _Stop(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def prompt_landscape(spec: ProblemSpec, prompts: PromptsConfig) -> AttentionLandscape:
    """The problem's landscape at the prompts' ``N`` (float64, on the prompts' device).

    Raises:
        ValueError: ``device = "cuda"`` where CUDA is not available.
    """
    if prompts.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("[prompts] device = \"cuda\" but CUDA is not available here.")
    return AttentionLandscape(
        spec.teacher,
        spec.expectation(torch.float64, prompts.device),
        noise=spec.noise,
        prompt_length=prompts.length,
        singular_rtol=spec.singular_rtol,
        loss_star=spec.loss_star,
        ridge=spec.ridge,
    )


#: feature entries (inputs × neurons) of one chunk of prompts on the CPU (:meth:`PromptTrainer.losses_and_gradients`).
#: Measured 2026-11-30, one thread, d = 20, M = 500, N = 1000, B = 32, float64: forward and backward of the features
#: took 0.52 s for the whole batch at once (memory-bound: each (32 032, 500) array is 128 MB), 0.27, 0.25, 0.32 and
#: 0.36 s in chunks of 1, 2, 4 and 8 prompts (0.5, 1, 2 and 4 million entries).
CHUNK_ENTRIES = 2**20


def chunk_prompts(inputs: int, neurons: int) -> int:
    """Prompts per chunk: as many prompts of ``inputs`` (N+1) inputs as keep ``inputs · neurons ≤`` :data:`CHUNK_ENTRIES`, at least one."""
    return max(1, CHUNK_ENTRIES // (inputs * neurons))


class PromptTrainer:
    """The SGD engine; ``landscape train`` drives it with a file layer as an :class:`~landscape.dynamics.simulate.Observer`.

    Hooks used: ``row(row)`` for every row, ``snapshot(step, time, a, w, p)``, and
    ``step(state, info, rng, None, checkpoint_due)`` after every update (the row of a state is
    written when its batch is drawn, so a checkpoint never carries a row).
    """

    def __init__(
        self,
        spec: ProblemSpec,
        prompts: PromptsConfig,
        dynamics: DynamicsConfig,
        state: PromptState,
        rng: np.random.Generator,
        landscape: AttentionLandscape,
    ) -> None:
        self.spec, self.prompts, self.dynamics = spec, prompts, dynamics
        self.dtype = torch.float64 if prompts.precision == "float64" else torch.float32
        if self.dtype != torch.float64:
            warnings.warn(
                f"the prompts model trains in {prompts.precision}; the exact columns stay float64 but the SGD steps "
                "carry float32 rounding.",
                PrecisionWarning,
                stacklevel=2,
            )
        self.landscape = landscape
        self.state, self.rng = state, rng
        self.layer = LinearSelfAttention(spec.features, self.dtype).to(prompts.device)
        self.set_seed = self._streams(prompts.seed)[0]
        self.info = PromptInfo(math.nan, math.nan)
        self.first_step = state.step

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _streams(seed: int) -> list[np.random.SeedSequence]:
        """[the training set's seed, the run generator's seed]: the two children of ``SeedSequence(seed)``."""
        return np.random.SeedSequence(seed).spawn(2)

    @classmethod
    def fresh(cls, spec: ProblemSpec, measure: ParticleMeasure, prompts: PromptsConfig, dynamics: DynamicsConfig) -> PromptTrainer:
        """Start at ``measure`` (``a`` (M, k), ``w`` (M, d)) with ``W`` realising ``Γ*(µ_0)``.

        Raises:
            ValueError: a measure that does not fit the problem, a singular ``Σ_µµ``, or CUDA asked for and absent.
        """
        landscape = prompt_landscape(spec, prompts)
        landscape.check_measure(measure, spec.features)
        landscape.conditioning(measure)  # a singular start is refused here, as the flow refuses it
        dtype = torch.float64 if prompts.precision == "float64" else torch.float32
        a, w, p = measure.tensors(torch.float64, prompts.device)
        with torch.no_grad():
            gamma = landscape.gamma_star(a, w, p)
            layer = LinearSelfAttention.from_gamma(gamma, math.sqrt(float(torch.linalg.matrix_norm(gamma))))
        state = PromptState(
            *(t.to(dtype) for t in (a, w, p, layer.w_kq.detach(), layer.w_pv.detach())), step=0, time=0.0, h=prompts.learning_rate
        )
        return cls(spec, prompts, dynamics, state, np.random.default_rng(cls._streams(prompts.seed)[1]), landscape)

    @classmethod
    def from_checkpoint(
        cls, spec: ProblemSpec, prompts: PromptsConfig, dynamics: DynamicsConfig, y: np.ndarray, step: int, rng: np.random.Generator
    ) -> PromptTrainer:
        """Continue from a checkpoint's flat state ``y`` at ``step`` with ``rng`` in its saved state.

        Raises:
            ValueError: ``y`` does not fit the problem.
        """
        dtype = torch.float64 if prompts.precision == "float64" else torch.float32
        d = spec.teacher.dim + int(spec.bias)
        state = PromptState.from_flat(y, spec.features, d, step, step * prompts.learning_rate, prompts.learning_rate, dtype, prompts.device)
        return cls(spec, prompts, dynamics, state, rng, prompt_landscape(spec, prompts))

    # --------------------------------------------------------------------- one step
    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch, ``x`` (B, N+1, d) and ``y`` (B, N+1): fresh prompts online, else ``B`` indices
        drawn without replacement from the fixed training set, each prompt regenerated from its index
        (:func:`~landscape.model.attention.indexed_prompts`, the first child of ``SeedSequence(seed)``)."""
        s, pr = self.spec, self.prompts
        if pr.train_prompts is None:
            return sample_prompts(self.rng, pr.batch, pr.length, s.law, s.teacher, s.noise, self.dtype, pr.device)
        index = self.rng.choice(pr.train_prompts, pr.batch, replace=False)
        return indexed_prompts(self.set_seed, index, pr.length, s.law, s.teacher, s.noise, self.dtype, pr.device)

    def losses_and_gradients(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Per-prompt losses (B,) at the current state and ``∂L̂/∂(a, w, W^{KQ}, W^{PV})`` of their mean.

        A prompt's loss depends on its own inputs only, so on the CPU the batch is taken in chunks of
        :func:`chunk_prompts` prompts and their gradients summed: the same sum in another order, with the
        chunk's (chunk·(N+1), M) features in cache instead of the whole batch's in memory.
        """
        s, layer = self.state, self.layer
        with torch.no_grad():
            layer.w_kq.copy_(s.w_kq)
            layer.w_pv.copy_(s.w_pv)
        a, w = s.a.detach().requires_grad_(True), s.w.detach().requires_grad_(True)
        count = x.shape[0]
        chunk = count if x.device.type == "cuda" else chunk_prompts(x.shape[1], a.shape[0])
        losses, grads = [], None
        with torch.enable_grad():
            for start in range(0, count, chunk):
                part = prompt_losses(layer, a, w, s.p, x[start : start + chunk], y[start : start + chunk], self.spec.activation,
                                     self.spec.bias)
                step = torch.autograd.grad(part.sum() / count, (a, w, layer.w_kq, layer.w_pv))
                grads = step if grads is None else tuple(g + h for g, h in zip(grads, step, strict=True))
                losses.append(part.detach())
        return torch.cat(losses), grads

    def update(self, grads: tuple[torch.Tensor, ...]) -> None:
        """One SGD step (module docstring): particle ``i`` by ``δt/p_i``, the attention by :meth:`update_attention`."""
        s, lr = self.state, self.prompts.learning_rate
        ga, gw, g_kq, g_pv = grads
        rate = lr / s.p[:, None]
        s.a, s.w = s.a - rate * ga, s.w - rate * gw
        s.w_kq, s.w_pv = self.update_attention(s.w_kq, s.w_pv, g_kq, g_pv)
        s.step += 1
        s.time = s.step * lr

    def update_attention(
        self, w_kq: torch.Tensor, w_pv: torch.Tensor, g_kq: torch.Tensor, g_pv: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``W ← W − δt · attention_rate · ∂L̂/∂W`` for both matrices (k+1, k+1); at ``attention_rate = inf``,
        ``W`` realising ``Γ*`` of the neurons just updated (:meth:`two_timescale_attention`)."""
        if math.isinf(self.prompts.attention_rate):
            return self.two_timescale_attention(w_pv)
        step = self.prompts.learning_rate * self.prompts.attention_rate
        return w_kq - step * g_kq, w_pv - step * g_pv

    def two_timescale_attention(self, w_pv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``W`` of :meth:`~LinearSelfAttention.from_gamma` ``(Γ*(µ), c)``, ``c = W^{PV}_{k+1,k+1}`` kept, for the
        current neurons: the attention optimised instantly (float64 from the exact landscape, then the run's dtype).

        Raises:
            _Stop: non-finite neurons, or ``Σ_µµ`` singular (no ``Γ*``).
        """
        s = self.state
        a, w, p = (t.to(torch.float64) for t in (s.a, s.w, s.p))
        if not bool(torch.isfinite(torch.cat([a.reshape(-1), w.reshape(-1)])).all()):
            raise _Stop("nonfinite", "the parameters are no longer finite")
        try:
            with torch.no_grad():
                gamma = self.landscape.gamma_star(a, w, p)
        except SingularMomentError as error:
            raise _Stop("singular", f"Σ_µµ became singular: {error}") from None
        layer = LinearSelfAttention.from_gamma(gamma, float(w_pv[-1, -1]))
        return layer.w_kq.detach().to(self.dtype), layer.w_pv.detach().to(self.dtype)

    # -------------------------------------------------------------------------- rows
    def row(self, losses: torch.Tensor) -> dict[str, Any]:
        """The row of the current state (keys :data:`COLUMNS`) from its batch's ``losses`` (B,).

        Raises:
            _Stop: non-finite parameters or losses, or a singular ``Σ_µµ``.
        """
        s, land = self.state, self.landscape
        values = torch.cat([s.y, losses])
        if not bool(torch.isfinite(values).all()):
            raise _Stop("nonfinite", "the parameters or the prompt losses are no longer finite")
        a, w, p = (t.to(torch.float64) for t in (s.a, s.w, s.p))
        gamma = LinearSelfAttention.gamma_of(s.w_kq.to(torch.float64), s.w_pv.to(torch.float64))
        with torch.no_grad():
            moments = land.moments(a, w, p)
            eig = torch.linalg.eigvalsh(moments.sigma_mm)
            lo, hi = float(eig[0]), float(eig[-1])
            if not (hi > 0 and lo > land.singular_rtol * hi):
                raise _Stop("singular", f"Σ_µµ became singular (λ_min = {lo:.3e}, λ_max = {hi:.3e})")
            loss = float(land.loss_from_moments(*moments))
            energy = float(land.loss_with_gamma_from_moments(gamma, *moments))
            distance = float(torch.linalg.matrix_norm(gamma - land.gamma_from_moments(*moments)))
        grad_norm = float(land.stationarity(a, w, p))
        self.info = PromptInfo(loss, grad_norm)
        values64 = losses.to(torch.float64)
        return {
            "step": s.step,
            "time": s.time,
            "prompt_loss": float(values64.mean()),
            "prompt_stderr": float(values64.std() / math.sqrt(values64.numel())),
            "loss": loss,
            "energy": energy,
            "grad_norm": grad_norm,
            "sigma_min": lo,
            "sigma_cond": hi / lo,
            "gamma_distance": distance,
        }

    # --------------------------------------------------------------------------- run
    def run(self, observer: Observer | None = None) -> tuple[str, str]:
        """Train to ``steps`` (or ``time``), then record the final row; returns ``(status, message)``.

        ``status`` is ``completed``, ``nonfinite`` or ``singular`` (the state stays the last
        checkpointed one; non-convergence is data, not a crash).
        """
        observer = observer or Observer()
        s, dyn, total = self.state, self.dynamics, self.prompts.total_steps
        try:
            while s.step < total:
                losses, grads = self.losses_and_gradients(*self.batch())
                if s.step % dyn.record_every == 0:
                    observer.row(self.row(losses))
                self._snapshot(observer, dyn.snapshot_every and s.step % dyn.snapshot_every == 0)
                self.update(grads)
                observer.step(s, self.info, self.rng, None, s.step == total or s.step % dyn.checkpoint_every == 0)
            losses, _ = self.losses_and_gradients(*self.batch())
            observer.row(self.row(losses))
            self._snapshot(observer, bool(dyn.snapshot_every))
        except _Stop as stop:
            return stop.status, f"stopped at step {s.step} (t = {s.time:.6g}): {stop}"
        return "completed", f"completed {s.step} SGD steps to t = {s.time:.6g}, loss {self.info.loss:.6g}"

    def _snapshot(self, observer: Observer, due: bool) -> None:
        if due:
            s = self.state
            observer.snapshot(s.step, s.time, *(t.to(torch.float64).cpu().numpy() for t in (s.a, s.w, s.p)))

    def final_arrays(self) -> dict[str, np.ndarray]:
        """``a`` (M, k), ``w`` (M, d), ``p`` (M,), ``w_kq``, ``w_pv`` (k+1, k+1) and ``gamma`` = Γ(W) (k, k), float64."""
        s = self.state
        arrays = {name: t.to(torch.float64).cpu().numpy() for name, t in
                  (("a", s.a), ("w", s.w), ("p", s.p), ("w_kq", s.w_kq), ("w_pv", s.w_pv))}
        arrays["gamma"] = LinearSelfAttention.gamma_of(s.w_kq, s.w_pv).to(torch.float64).cpu().numpy()
        return arrays

    def result(self, status: str, message: str, wall_seconds: float) -> RunResult:
        """The :class:`~landscape.dynamics.simulate.RunResult` of a finished :meth:`run` (``evaluations``: SGD steps in this call)."""
        s = self.state
        return RunResult(status, message, s.step, s.time, self.info.loss, self.info.grad_norm, s.step - self.first_step, wall_seconds)


class _Rows(Observer):
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def row(self, row: dict[str, Any]) -> None:
        self.rows.append(row)


def simulate_prompts(
    spec: ProblemSpec, measure: ParticleMeasure, prompts: PromptsConfig, dynamics: DynamicsConfig | None = None
) -> Trajectory:
    """Train the real model from ``measure`` in memory, as ``landscape train`` with ``scheme = "prompts"`` would.

    Returns:
        the :class:`Trajectory` (one float64 array (R,) per column of :data:`COLUMNS`, equal bit
        for bit to the run's ``trajectory.csv``), its ``result`` and ``final``
        (:meth:`PromptTrainer.final_arrays`, None when the run stopped early).
    """
    started = wallclock.perf_counter()
    trainer = PromptTrainer.fresh(spec, measure, prompts, dynamics or DynamicsConfig(scheme="prompts"))
    collector = _Rows()
    status, message = trainer.run(collector)
    columns = {name: np.array([float(r[name]) for r in collector.rows]) for name in COLUMNS}
    final = trainer.final_arrays() if status == "completed" else None
    return Trajectory(columns, [""] * len(collector.rows), trainer.result(status, message, wallclock.perf_counter() - started), final)


@dataclass(frozen=True)
class StepLimit:
    """How stiff an SGD step of the real model is at a measure (:func:`step_limit`).

    Attributes:
        curvature: ``λ_max(P^{-1/2} ∇²_θ L(µ, Γ) P^{-1/2})`` at fixed ``Γ = Γ*(µ)``, ``P = diag(p_i)``.
        step: ``2 / curvature``, the largest stable explicit step ``δt``.
        gamma_norm: ``‖Γ*(µ)‖_F``.
        gamma_rate: ``‖dΓ*(µ_t)/dt‖_F`` along the landscape flow (``θ̇_i = −∇_θ δL_N/δµ(θ_i)``).
        products: Hessian-vector products the Lanczos iteration took.
    """

    curvature: float
    step: float
    gamma_norm: float
    gamma_rate: float
    products: int

    @property
    def gamma_time(self) -> float:
        """``‖Γ*‖ / ‖dΓ*/dt‖``: the time in which ``Γ*(µ_t)`` moves by its own size."""
        return self.gamma_norm / self.gamma_rate


def step_limit(landscape: AttentionLandscape, measure: ParticleMeasure, tol: float = 1e-3) -> StepLimit:
    r"""The explicit-step limit of SGD on the real model at ``measure`` (``a`` (M, k), ``w`` (M, d), ``p`` (M,)).

    One step moves particle ``i`` by ``−(δt/p_i) ∂L̂/∂θ_i`` (module docstring): in expectation, at
    ``W`` fixed with ``Γ(W) = Γ*(µ)``, an explicit Euler step of ``θ̇ = −P^{-1}∇_θ F`` for
    ``F(θ) = L(µ_θ, Γ)`` (docs/theory.md §5–6), stable along every direction only while
    ``δt < 2/λ_max(P^{-1}∇²F)``. The joint step on ``(θ, W)`` is at least as stiff, whatever
    ``attention_rate`` (the particle block of its Jacobian is ``P^{-1}∇²F``, so the whole
    Jacobian's largest eigenvalue is at least this one); the landscape flow's own field
    (``Γ = Γ*(µ)`` at every instant) is not bound by it. ``λ_max`` by Lanczos
    (``scipy.sparse.linalg.eigsh``, relative tolerance ``tol``) on the symmetric
    ``P^{-1/2}∇²F P^{-1/2}`` with Hessian-vector products by autograd; ``dΓ*/dt`` by a
    forward-mode product of ``Γ*`` along the flow's velocity.

    Raises:
        ValueError: a measure that does not fit the landscape.
    """
    landscape.check_measure(measure)
    a, w, p = measure.tensors(landscape.dtype, landscape.device)
    k = a.shape[1]
    theta = torch.cat([a, w], dim=1)
    scale = p.rsqrt()[:, None]
    with torch.no_grad():
        gamma = landscape.gamma_star(a, w, p)

    def energy(t: torch.Tensor) -> torch.Tensor:
        return landscape.loss_with_gamma(t[:, :k], t[:, k:], p, gamma)

    count = 0

    def product(v: np.ndarray) -> np.ndarray:
        nonlocal count
        count += 1
        direction = torch.as_tensor(v.reshape(theta.shape), dtype=theta.dtype, device=theta.device) * scale
        _, hv = torch.autograd.functional.hvp(energy, theta, direction)
        return (hv * scale).reshape(-1).cpu().numpy()

    size = theta.numel()
    operator = LinearOperator((size, size), matvec=product, dtype=np.float64)
    start = np.random.default_rng(0).standard_normal(size)
    curvature = float(eigsh(operator, k=1, which="LA", tol=tol, v0=start, return_eigenvectors=False)[0])
    velocity = landscape.velocity(a, w, p)
    _, rate = torch.autograd.functional.jvp(
        lambda t: landscape.gamma_star(t[:, :k], t[:, k:], p), theta, -velocity
    )
    return StepLimit(curvature, 2.0 / curvature, float(torch.linalg.matrix_norm(gamma)), float(torch.linalg.matrix_norm(rate)), count)
