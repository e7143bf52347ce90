r"""The whole spectrum of the Wasserstein Hessian: stochastic Lanczos quadrature and Hutchinson's trace (docs/theory.md §7).

The spectral measure of a symmetric operator ``Ĥ`` of size ``n`` is ``φ = (1/n) Σ_j δ_{λ_j}``
(for :class:`~landscape.second_order.operators.WassersteinHessian`, the operator ``λ_min``
is computed on, null directions included). Stochastic Lanczos quadrature (Ubaru, Chen &
Saad 2017) estimates it: for each of ``q`` Rademacher probes ``z``, ``m`` Lanczos steps from
``z/|z|`` (full reorthogonalisation) give a tridiagonal ``T_m``; its eigenvalues ``θ`` are the
Gauss nodes and the squared first components ``τ²`` of its eigenvectors the weights, so that
``Σ τ² f(θ) = (zᵀ f(Ĥ) z)/n`` exactly for polynomials ``f`` of degree ``< 2m``. The estimate
is the average of the ``q`` per-probe rules. ``tr Ĥ = E[zᵀĤz]`` (Hutchinson) is read off the
same probes: ``zᵀĤz = n α_1``, the first Lanczos coefficient, with its standard error over probes.

The trace has a second estimator, Hutch++ (Meyer, Musco, Musco & Woodruff 2021;
:func:`trace_estimate`): from ``m`` products, a Rademacher sketch ``S`` of ``s = ⌊m/3⌋`` columns,
``Q = orth(Ĥ S)``, and ``tr Ĥ ≈ tr(QᵀĤQ) + (1/g) Σ gᵀ(I − QQᵀ)Ĥ(I − QQᵀ)g`` over ``g = m − 2s``
Rademacher probes. The first term is exact on the sketched range, so only the residual's
(much smaller, for a decaying spectrum) Hutchinson variance is left: the error estimate is that
part's standard error (over ``g`` probes, so itself uncertain when ``g`` is small), and the
value is exact when ``Q`` spans the range of ``Ĥ`` (rank ≤ s).

Neither wins everywhere. Measured on Wasserstein Hessians at critical points of the orthogonal
erf teacher (rms error over 100–200 seeds at 16 products): Hutch++ 3–4× more accurate where
the nonzero spectrum is a few dozen eigenvalues (n = 30, 60), 1.1–1.3× less accurate where it
is flat over many (n = 96, 192), and 7× less where the Hessian is nearly diagonal in the
particle coordinates (Rademacher probes are exact on a diagonal; the projection spoils that);
at 48 products Hutch++ is 20–10¹⁰× better on the first kinds. Plain Hutchinson is also free
inside :func:`spectral_density` (the quadrature's own probes), where Hutch++ spends ``q`` more
products, so it stays the default (:data:`DEFAULT_TRACE_METHOD`); ask for ``"hutch++"`` with a
budget of a few times the Hessian's effective rank.

Two error estimates come with the density, both in the Wasserstein-1 distance
(:func:`wasserstein1`): the probe-to-probe spread, ``(Σ_j W1(φ_j, φ)² / (q (q − 1)))^{1/2}`` (the
per-probe measures ``φ_j`` scatter about their mean ``φ``; like a standard error, the mean's own
error is their spread over ``√(q − 1)``), and the change
when the Lanczos steps are halved, ``W1(φ, φ_{m/2})`` (the leading ``m/2 × m/2`` block of each
``T_m`` is the tridiagonal of ``m/2`` steps: no extra Hessian-vector products).

Example:
    >>> op = WassersteinHessian(landscape, measure)         # doctest: +SKIP
    >>> density = spectral_density(op, probes=16, steps=30)  # doctest: +SKIP
    >>> density.nodes.shape, density.weights.sum()           # doctest: +SKIP
    ((480,), 1.0)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from .operators import LinearOperator

__all__ = [
    "SpectralDensity", "Trace", "spectral_density", "hutchinson_trace", "trace_estimate", "wasserstein1",
    "DEFAULT_PROBES", "DEFAULT_STEPS", "TRACE_METHODS", "DEFAULT_TRACE_METHOD",
]

#: ``landscape analyze --spectrum`` defaults: Rademacher probes and Lanczos steps per probe.
DEFAULT_PROBES = 16
DEFAULT_STEPS = 40
#: trace estimators: plain Hutchinson, and Hutch++ (a sketched range taken exactly, Hutchinson on the rest).
TRACE_METHODS = ("hutchinson", "hutch++")
#: the estimator used unless asked otherwise (free inside :func:`spectral_density`; see the module text for when Hutch++ wins).
DEFAULT_TRACE_METHOD = "hutchinson"


@dataclass(frozen=True)
class Trace:
    """An estimate of ``tr Ĥ``.

    Attributes:
        value: the estimate; stderr: its standard error (Hutchinson: over the probes; Hutch++: of
            the residual's Hutchinson part, the sketched part being exact; NaN for one probe);
        probes: the Rademacher probes averaged; method: ``"hutchinson"`` or ``"hutch++"``;
        products: operator applications the estimate rests on (for Hutchinson inside
            :func:`spectral_density`, the first Lanczos products, shared with the quadrature);
        sketch: the sketch's columns ``s`` (0 for Hutchinson).
    """

    value: float
    stderr: float
    probes: int
    method: str = "hutchinson"
    products: int = 0
    sketch: int = 0

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "stderr": self.stderr if math.isfinite(self.stderr) else None,
            "probes": self.probes,
            "method": self.method,
            "products": self.products,
            "sketch": self.sketch,
        }


@dataclass(frozen=True)
class SpectralDensity:
    """A stochastic-Lanczos-quadrature estimate of the spectral measure ``(1/n) Σ_j δ_{λ_j}``.

    Attributes:
        nodes: array of shape (r,), the Gauss nodes of every probe, concatenated.
        weights: array of shape (r,), their weights (each probe's sum to ``1/q``; all sum to 1).
        probe_index: int array of shape (r,), the probe each node comes from.
        probes: ``q``; steps: the Lanczos steps asked for (a probe stops early when its Krylov
            space is invariant; ``steps`` is capped at ``n``).
        probe_spread: ``(Σ_j W1(φ_j, φ)² / (q (q − 1)))^{1/2}`` over the per-probe measures ``φ_j`` (NaN for one probe).
        steps_change: ``W1(φ, φ_{⌈m/2⌉})``, the change when the Lanczos steps are halved.
        trace: Hutchinson's trace from the same probes.
        hvp_count: operator applications spent.
    """

    nodes: np.ndarray
    weights: np.ndarray
    probe_index: np.ndarray
    probes: int
    steps: int
    probe_spread: float
    steps_change: float
    trace: Trace
    hvp_count: int

    @property
    def error(self) -> float:
        """A W1 error estimate: the larger of the probe spread and the steps change."""
        return float(np.nanmax([self.probe_spread, self.steps_change]))

    def to_dict(self) -> dict:
        """``nodes``, ``weights`` (sorted by node), ``probes``, ``steps`` and the error estimates; JSON-ready."""
        order = np.argsort(self.nodes, kind="stable")
        spread = self.probe_spread if math.isfinite(self.probe_spread) else None
        return {
            "nodes": self.nodes[order].tolist(),
            "weights": self.weights[order].tolist(),
            "probes": self.probes,
            "steps": self.steps,
            "error": {"w1_probe_spread": spread, "w1_steps_halved": self.steps_change, "w1_estimate": self.error},
            "hvp_count": self.hvp_count,
        }


def _quadrature(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss nodes and weights of the tridiagonal with diagonal ``alpha`` (k,) and off-diagonal ``beta`` (k − 1,).

    Returns ``(θ (k,), τ² (k,))``: the eigenvalues and the squared first components of the
    unit eigenvectors (they sum to 1).
    """
    t = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    theta, vectors = np.linalg.eigh(t)
    return theta, vectors[0] ** 2


def _lanczos(operator: LinearOperator, start: torch.Tensor, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lanczos with full reorthogonalisation, all columns of ``start`` (n, q) at once.

    Returns ``alpha`` (q, steps), ``beta`` (q, steps − 1) and ``length`` (q,): column ``j``'s
    tridiagonal is ``alpha[j, :length[j]]``, ``beta[j, :length[j] − 1]``. A column stops
    (breakdown) when its next ``β`` falls below ``1000·eps`` times the largest coefficient
    seen: its Krylov space is then invariant and the quadrature exact.
    """
    n, q = start.shape
    basis = torch.zeros((steps, n, q), dtype=start.dtype, device=start.device)
    basis[0] = start / torch.linalg.vector_norm(start, dim=0)
    alpha = np.zeros((q, steps))
    beta = np.zeros((q, max(steps - 1, 0)))
    length = np.full(q, steps)
    alive = torch.ones(q, dtype=torch.bool, device=start.device)
    scale = np.zeros(q)
    eps = torch.finfo(start.dtype).eps
    for i in range(steps):
        w = operator.matmat(basis[i])
        a = (basis[i] * w).sum(0)
        alpha[:, i] = np.where(alive.cpu().numpy(), a.cpu().numpy(), 0.0)
        if i == steps - 1:
            break
        for _ in range(2):  # full reorthogonalisation, twice is enough (Kahan–Parlett)
            w = w - torch.einsum("inq,iq->nq", basis[: i + 1], torch.einsum("inq,nq->iq", basis[: i + 1], w))
        b = torch.linalg.vector_norm(w, dim=0)
        scale = np.maximum(scale, np.maximum(np.abs(alpha[:, i]), b.cpu().numpy()))
        stop = alive & (b <= torch.as_tensor(1e3 * eps * np.maximum(scale, 1e-300), dtype=b.dtype, device=b.device))
        length[stop.cpu().numpy()] = i + 1
        alive = alive & ~stop
        beta[:, i] = np.where(alive.cpu().numpy(), b.cpu().numpy(), 0.0)
        basis[i + 1] = torch.where(alive, w / torch.where(alive, b, torch.ones_like(b)), torch.zeros_like(w))
        if not bool(alive.any()):
            break
    return alpha, beta, length


def _merge(rules: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-probe rules ``(θ, τ²)`` → concatenated nodes, weights (each rule times ``1/q``) and probe indices."""
    q = len(rules)
    nodes = np.concatenate([theta for theta, _ in rules])
    weights = np.concatenate([tau2 / q for _, tau2 in rules])
    index = np.concatenate([np.full(len(theta), j) for j, (theta, _) in enumerate(rules)])
    return nodes, weights, index


def spectral_density(
    operator: LinearOperator,
    probes: int = DEFAULT_PROBES,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    trace_method: str = DEFAULT_TRACE_METHOD,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature for the spectral measure of the symmetric ``operator``, with its trace.

    Args:
        operator: a symmetric operator of size ``n`` (e.g. the Wasserstein Hessian).
        probes: ``q ≥ 1`` Rademacher probes; steps: ``m ≥ 1`` Lanczos steps per probe (capped at ``n``).
        seed: the probes' random seed (a numpy generator, so runs repeat exactly).
        trace_method: ``"hutchinson"`` (read off the quadrature's probes, no extra product) or
            ``"hutch++"`` (:func:`trace_estimate` with ``q`` more products, its own probes; ``q ≥ 3``).

    Returns:
        The merged quadrature (:class:`SpectralDensity`), with ``q·m`` nodes at most.

    Raises:
        ValueError: when ``probes`` or ``steps`` is below 1, an unknown ``trace_method``, or Hutch++ with ``q < 3``.
    """
    if probes < 1 or steps < 1:
        raise ValueError(f"spectral density needs probes ≥ 1 and steps ≥ 1, got probes = {probes}, steps = {steps}.")
    _check_trace_method(trace_method, probes)
    n = operator.size
    steps = min(int(steps), n)
    rng = np.random.default_rng(seed)
    z = torch.as_tensor(rng.choice([-1.0, 1.0], size=(n, probes)), dtype=operator.dtype, device=operator.device)
    calls = operator.calls
    alpha, beta, length = _lanczos(operator, z, steps)
    full = [_quadrature(alpha[j, : length[j]], beta[j, : length[j] - 1]) for j in range(probes)]
    half_steps = math.ceil(steps / 2)
    half = [_quadrature(alpha[j, : min(length[j], half_steps)], beta[j, : min(length[j], half_steps) - 1]) for j in range(probes)]
    nodes, weights, index = _merge(full)
    half_nodes, half_weights, _ = _merge(half)
    spread = math.nan
    if probes > 1:
        distances = np.array([wasserstein1(theta, tau2, nodes, weights) for theta, tau2 in full])
        spread = float(np.sqrt(np.mean(distances**2) / (probes - 1)))
    if trace_method == "hutchinson":
        trace = dataclasses.replace(hutchinson_trace(n * alpha[:, 0]), products=probes)
    else:
        trace = trace_estimate(operator, probes, "hutch++", seed=seed)
    return SpectralDensity(
        nodes, weights, index, probes, steps, spread, wasserstein1(nodes, weights, half_nodes, half_weights), trace, operator.calls - calls
    )


def hutchinson_trace(quadratic_forms: np.ndarray) -> Trace:
    """Hutchinson's trace from the values ``zᵀĤz`` of Rademacher probes, array of shape (q,).

    Raises:
        ValueError: when no value is given.
    """
    values = np.asarray(quadratic_forms, dtype=float).reshape(-1)
    if values.size == 0:
        raise ValueError("Hutchinson's trace needs at least one probe, got none.")
    stderr = float(np.std(values, ddof=1) / math.sqrt(values.size)) if values.size > 1 else math.nan
    return Trace(float(values.mean()), stderr, int(values.size))


def trace_estimate(operator: LinearOperator, products: int, method: str = DEFAULT_TRACE_METHOD, seed: int = 0) -> Trace:
    """``tr Ĥ`` of the symmetric ``operator`` from ``products`` operator applications.

    ``"hutchinson"``: the mean of ``zᵀĤz`` over ``products`` Rademacher probes. ``"hutch++"``
    (Meyer, Musco, Musco & Woodruff 2021): ``s = ⌊products/3⌋`` Rademacher sketch columns ``S``
    (n, s), ``Q = orth(ĤS)`` (n, s), ``tr(QᵀĤQ)`` exactly, plus Hutchinson's estimate of
    ``tr((I − QQᵀ)Ĥ(I − QQᵀ))`` from ``g = products − 2s`` probes; its standard error is the
    estimate's (the first term has none given ``S``). Exact when ``rank Ĥ ≤ s`` (``Q`` then spans
    the range of ``Ĥ`` and the residual vanishes).

    Args:
        operator: a symmetric operator of size ``n``; products: the budget (≥ 1; ≥ 3 for Hutch++);
        method: one of :data:`TRACE_METHODS`; seed: the random seed of ``S`` and the probes.

    Raises:
        ValueError: an unknown ``method``, or too few ``products`` for it.
    """
    _check_trace_method(method, products)
    n = operator.size
    rng = np.random.default_rng([seed, 1])  # a stream of its own, apart from the quadrature's probes

    def rademacher(columns: int) -> torch.Tensor:
        return torch.as_tensor(rng.choice([-1.0, 1.0], size=(n, columns)), dtype=operator.dtype, device=operator.device)

    if method == "hutchinson":
        z = rademacher(products)
        trace = hutchinson_trace((z * operator.matmat(z)).sum(0).cpu().numpy())
        return dataclasses.replace(trace, products=products)
    sketch = products // 3
    q, _ = torch.linalg.qr(operator.matmat(rademacher(sketch)))  # reduced: range(ĤS) ⊆ range(Q)
    exact = float((q * operator.matmat(q)).sum())
    g = _project_out(q, rademacher(products - 2 * sketch))
    residual = hutchinson_trace((g * operator.matmat(g)).sum(0).cpu().numpy())
    return Trace(exact + residual.value, residual.stderr, residual.probes, "hutch++", products, sketch)


def _project_out(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(I − QQᵀ) X`` for orthonormal columns ``Q`` (n, s) and ``X`` (n, b)."""
    return x - q @ (q.T @ x)


def _check_trace_method(method: str, products: int) -> None:
    if method not in TRACE_METHODS:
        raise ValueError(f"trace method must be one of {', '.join(TRACE_METHODS)}, got {method!r}.")
    least = 3 if method == "hutch++" else 1
    if products < least:
        raise ValueError(f"{method} needs at least {least} products (probes), got {products}.")


def wasserstein1(x: np.ndarray, p: np.ndarray, y: np.ndarray, q: np.ndarray) -> float:
    """The Wasserstein-1 distance ``∫ |F_p − F_q| dt`` between two discrete measures on the line.

    Args:
        x, p: support points and weights of the first measure, arrays of shape (r,);
        y, q: those of the second, shape (s,). Weights are non-negative with equal totals.

    Raises:
        ValueError: on mismatched shapes, a negative weight, or totals that differ by more than 1e-9 relative.
    """
    x, p, y, q = (np.asarray(v, dtype=float).reshape(-1) for v in (x, p, y, q))
    if x.shape != p.shape or y.shape != q.shape:
        raise ValueError(f"W1 needs one weight per point, got shapes {x.shape}, {p.shape} and {y.shape}, {q.shape}.")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("W1 needs non-negative weights.")
    if abs(p.sum() - q.sum()) > 1e-9 * max(p.sum(), q.sum(), 1e-300):
        raise ValueError(f"W1 needs equal total masses, got {p.sum():.12g} and {q.sum():.12g}.")
    points = np.concatenate([x, y])
    mass = np.concatenate([p, -q])
    order = np.argsort(points, kind="stable")
    cdf_gap = np.cumsum(mass[order])[:-1]
    return float(np.sum(np.abs(cdf_gap) * np.diff(points[order])))
