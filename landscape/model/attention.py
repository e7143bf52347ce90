r"""A real linear self-attention layer on sampled prompts (docs/theory.md §2).

The embedding of a prompt ``(x_1, y_1), …, (x_N, y_N)`` and query ``x_q`` is

    Z = [h(x_1) … h(x_N) h(x_q); y_1 … y_N 0] ∈ R^{(k+1)×(N+1)},

and one linear self-attention layer maps ``Z ↦ Z + W^{PV} Z M (Zᵀ W^{KQ} Z) / N`` with
``M = diag(1, …, 1, 0)`` (the query is not a key). Its bottom-right entry is the
prediction. With ``W^{PV} = e_{k+1} e_{k+1}ᵀ`` and the top-left block of ``W^{KQ}`` equal
to ``Γᵀ`` it is ``h(x_q)ᵀ Γ S``, ``S = (1/N) Σ y_n h(x_n)``: the read-out of the landscape.
:func:`simulate_risk` measures ``½ E[(y_q − ŷ)²]`` by sampling and returns it with its
standard error, to compare with ``L(µ, Γ)`` and ``L_N(µ)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .activations import Activation
from .laws import InputLaw, as_tensor
from .measure import ParticleMeasure
from .teacher import Teacher

__all__ = [
    "LinearSelfAttention",
    "embed_prompts",
    "indexed_prompts",
    "mlp_features",
    "prompt_losses",
    "sample_prompts",
    "simulate_risk",
    "SimulatedRisk",
]


class LinearSelfAttention(nn.Module):
    """One linear self-attention layer with parameters ``W^{KQ}``, ``W^{PV}`` of shape (k+1, k+1)."""

    def __init__(self, features: int, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        size = features + 1
        self.w_kq = nn.Parameter(torch.zeros(size, size, dtype=dtype))
        self.w_pv = nn.Parameter(torch.zeros(size, size, dtype=dtype))

    @classmethod
    def from_gamma(cls, gamma: torch.Tensor, value_scale: float = 1.0) -> "LinearSelfAttention":
        """The layer whose prediction is ``h_qᵀ Γ S`` (``gamma`` of shape (k, k)).

        ``W^{PV}_{k+1,k+1} = c`` and the top-left block of ``W^{KQ}`` is ``Γᵀ/c`` for
        ``c = value_scale > 0`` (``c = ‖Γ‖_F^{1/2}`` balances the two factors of the product).
        The layer lives on ``gamma``'s device and has its dtype.
        """
        k = gamma.shape[0]
        layer = cls(k, dtype=gamma.dtype).to(gamma.device)
        with torch.no_grad():
            layer.w_kq[:k, :k] = gamma.T / value_scale
            layer.w_pv[k, k] = value_scale
        return layer

    @staticmethod
    def gamma_of(w_kq: torch.Tensor, w_pv: torch.Tensor) -> torch.Tensor:
        """``Γ(W) = W^{PV}_{k+1,k+1} · (W^{KQ}_{:k,:k})ᵀ`` (k, k): the inverse of :meth:`from_gamma`.

        With ``B`` the top-left block of ``W^{KQ}``, ``b`` its last row, ``(v_h, v_y)`` the last
        row of ``W^{PV}``, ``Ĥ = (1/N)Σ h_n h_nᵀ`` and ``ŷ₂ = (1/N)Σ y_n²``, the prediction is
        ``v_hᵀ(Ĥ B h_q + S bᵀh_q) + v_y(Sᵀ B h_q + ŷ₂ bᵀh_q)``; with ``v_h = 0`` and ``b = 0``
        it is ``h_qᵀ Γ(W) S``, the read-out of docs/theory.md §2. Differentiable in ``W``.
        """
        k = w_kq.shape[0] - 1
        return w_pv[k, k] * w_kq[:k, :k].T

    def gamma(self) -> torch.Tensor:
        """:meth:`gamma_of` this layer's ``W^{KQ}``, ``W^{PV}``."""
        return self.gamma_of(self.w_kq, self.w_pv)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z``: (B, k+1, N+1) embeddings; returns the layer's output of the same shape."""
        prompt_length = z.shape[-1] - 1
        keys = z[..., :prompt_length]
        scores = keys.transpose(-1, -2) @ self.w_kq @ z  # (B, N, N+1)
        return z + self.w_pv @ keys @ scores / prompt_length

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """Bottom-right entry of :meth:`forward`'s output, the prediction ``ŷ`` for each prompt, shape (B,).

        Only the query's column is formed: with ``K`` the keys (k+1, N) and ``z_q`` the query's
        column (whose last entry is 0), ``ŷ = e_{k+1}ᵀ W^{PV} (K Kᵀ/N) W^{KQ} z_q``, which costs
        O(B N k²) instead of the O(B N² k) of the whole (N, N+1) score matrix.
        """
        prompt_length = z.shape[-1] - 1
        keys, query = z[..., :prompt_length], z[..., prompt_length]
        gram = keys @ keys.transpose(-1, -2) / prompt_length  # (B, k+1, k+1)
        return ((gram @ (query @ self.w_kq.T)[..., None])[..., 0] @ self.w_pv[-1]) + query[..., -1]


def embed_prompts(h_prompt: torch.Tensor, y_prompt: torch.Tensor, h_query: torch.Tensor) -> torch.Tensor:
    """Embedding ``Z``: ``h_prompt`` (B, N, k), ``y_prompt`` (B, N), ``h_query`` (B, k) → (B, k+1, N+1)."""
    top = torch.cat([h_prompt, h_query[:, None, :]], dim=1).transpose(1, 2)
    bottom = torch.cat([y_prompt, torch.zeros_like(y_prompt[:, :1])], dim=1)[:, None, :]
    return torch.cat([top, bottom], dim=1)


@dataclass(frozen=True)
class SimulatedRisk:
    """``½ mean((y_q − ŷ)²)`` over sampled prompts, with its standard error and count."""

    risk: float
    stderr: float
    prompts: int


def simulate_risk(
    layer: LinearSelfAttention,
    measure: ParticleMeasure,
    teacher: Teacher,
    activation: Activation,
    law: InputLaw,
    prompt_length: int,
    noise: float = 0.0,
    prompts: int = 20_000,
    batch: int = 2_000,
    seed: int = 0,
    bias: bool = False,
) -> SimulatedRisk:
    """Empirical in-context risk of ``layer`` on freshly sampled tasks and prompts.

    Each prompt draws ``β ~ N(0, I_{k°})``, ``N + 1`` inputs from ``law`` and labels
    ``y = β·f°(x) + ε``, ``ε ~ N(0, τ²)``; the query's label is hidden from the layer.

    Raises:
        ValueError: if ``prompt_length`` or ``prompts`` is not a positive integer.
    """
    if not (isinstance(prompt_length, int) and prompt_length >= 1):
        raise ValueError(f"simulation needs a finite integer prompt_length ≥ 1, got {prompt_length!r}.")
    if not (isinstance(prompts, int) and prompts >= 2 and batch >= 1):
        raise ValueError(f"simulation needs prompts ≥ 2 and batch ≥ 1, got {prompts!r}, {batch!r}.")
    dtype = layer.w_kq.dtype
    a, w, p = measure.tensors(dtype)
    rng = np.random.default_rng(seed)
    losses = []
    for start in range(0, prompts, batch):
        x, y = sample_prompts(rng, min(batch, prompts - start), prompt_length, law, teacher, noise, dtype, "cpu")
        with torch.no_grad():
            losses.append(prompt_losses(layer, a, w, p, x, y, activation, bias))
    values = torch.cat(losses)
    return SimulatedRisk(float(values.mean()), float(values.std() / values.numel() ** 0.5), values.numel())


def _draw(
    rng: np.random.Generator, count: int, prompt_length: int, law: InputLaw, features: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw draws of ``count`` prompts from ``rng``, in this order: the law's seed, then ``x``
    (count·(N+1), d), ``β`` (count, k°) and the unit noise (count, N+1)."""
    x = law.sample(count * (prompt_length + 1), int(rng.integers(2**63)))
    return x, rng.standard_normal((count, features)), rng.standard_normal((count, prompt_length + 1))


def _label(
    draws: tuple[np.ndarray, np.ndarray, np.ndarray], teacher: Teacher, noise: float, dtype: torch.dtype, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (B, N+1, d) and ``y = β·f°(x) + τ ε`` (B, N+1) from :func:`_draw`'s arrays."""
    x_raw, beta_raw, eps_raw = draws
    count, length = eps_raw.shape
    x = as_tensor(x_raw, dtype, device)
    f = teacher(x).reshape(count, length, -1)
    beta = torch.as_tensor(beta_raw, dtype=dtype, device=device)
    eps = torch.as_tensor(eps_raw, dtype=dtype, device=device) * noise
    y = (f * beta[:, None, :]).sum(-1) + eps
    return x.reshape(count, length, -1), y


def sample_prompts(
    rng: np.random.Generator,
    count: int,
    prompt_length: int,
    law: InputLaw,
    teacher: Teacher,
    noise: float,
    dtype: torch.dtype,
    device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` prompts of docs/theory.md §1: inputs ``x`` (count, N+1, d) and labels ``y`` (count, N+1).

    Each prompt draws ``β ~ N(0, I_{k°})``, ``N + 1`` inputs from ``law`` and
    ``y = β·f°(x) + ε``, ``ε ~ N(0, τ²)``; the last pair is the query. Draws, in this order,
    the law's seed, ``β`` and ``ε`` from ``rng``.
    """
    return _label(_draw(rng, count, prompt_length, law, teacher.features), teacher, noise, dtype, device)


def indexed_prompts(
    seed: np.random.SeedSequence,
    indices: np.ndarray,
    prompt_length: int,
    law: InputLaw,
    teacher: Teacher,
    noise: float,
    dtype: torch.dtype,
    device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts ``indices`` (B,) of the fixed training set of ``seed``: ``x`` (B, N+1, d), ``y`` (B, N+1).

    Prompt ``i`` is :func:`sample_prompts` of one prompt from its own generator, seeded by the
    ``i``-th child of ``seed`` (``SeedSequence(entropy, spawn_key + (i,))``, computed in O(1)
    from ``i``): the set is never stored (10 000 prompts of 1 001 inputs in d = 20 would take
    1.6 GB in float64), every epoch sees the same prompts, and a prompt depends on its index
    only, not on which others are drawn with it.
    """
    draws = [
        _draw(np.random.default_rng(np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, int(i)))), 1, prompt_length, law,
              teacher.features)
        for i in indices
    ]
    x, beta, eps = (np.concatenate(part) for part in zip(*draws, strict=True))
    return _label((x, beta, eps), teacher, noise, dtype, device)


def mlp_features(
    x: torch.Tensor, a: torch.Tensor, w: torch.Tensor, p: torch.Tensor, activation: Activation, bias: bool = False
) -> torch.Tensor:
    """``h_µ(x) = Σ_i p_i a_i σ(w_i·x)`` (docs/theory.md §2) for ``x`` (..., d), ``a`` (M, k), ``w`` (M, d[+1]), ``p`` (M,); shape (..., k)."""
    xb = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1) if bias else x
    return activation(xb @ w.T) @ (p[:, None] * a)


def prompt_losses(
    layer: LinearSelfAttention,
    a: torch.Tensor,
    w: torch.Tensor,
    p: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    activation: Activation,
    bias: bool = False,
) -> torch.Tensor:
    """``½ (y_q − ŷ)²`` of the MLP ``(a, w, p)`` followed by ``layer`` on prompts ``x`` (B, N+1, d), ``y`` (B, N+1); shape (B,)."""
    h = mlp_features(x, a, w, p, activation, bias)
    z = embed_prompts(h[:, :-1], y[:, :-1], h[:, -1])
    return 0.5 * (y[:, -1] - layer.predict(z)) ** 2
