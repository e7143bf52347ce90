"""Particle measures ``µ = Σ_i p_i δ_{(a_i, w_i)}`` over neurons ``θ = (a, w) ∈ R^k × R^d``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..io.files import load_npz, save_npz

__all__ = ["ParticleMeasure"]

#: absolute tolerance on ``Σ p_i = 1``.
WEIGHT_SUM_ATOL = 1e-9


@dataclass(frozen=True, eq=False)
class ParticleMeasure:
    """A validated, immutable particle measure.

    Attributes:
        a: array of shape (M, k), output weights ``a_i``.
        w: array of shape (M, d) (``d + 1`` with a bias, the bias last), input weights.
        p: array of shape (M,), nonnegative weights summing to 1 (``1/M`` if omitted).

    Raises:
        ValueError: wrong shapes, non-finite values, negative weights or weights that do not
            sum to 1 (within ``WEIGHT_SUM_ATOL``).

    Example:
        >>> mu = ParticleMeasure(np.eye(2), np.ones((2, 3)))
        >>> mu.size, mu.features, mu.dim
        (2, 2, 3)
    """

    a: np.ndarray
    w: np.ndarray
    p: np.ndarray | None = None

    def __post_init__(self) -> None:
        a = _finite_matrix(self.a, "a")
        w = _finite_matrix(self.w, "w")
        if a.shape[0] != w.shape[0]:
            raise ValueError(f"a and w must have one row per particle, got shapes {a.shape} and {w.shape}.")
        if a.shape[0] == 0:
            raise ValueError("a measure needs at least one particle.")
        if self.p is None:
            p = np.full(a.shape[0], 1.0 / a.shape[0])
        else:
            p = np.asarray(self.p, dtype=np.float64)
            if p.shape != (a.shape[0],):
                raise ValueError(f"p must have shape ({a.shape[0]},), got shape {p.shape}.")
            if not np.all(np.isfinite(p)):
                raise ValueError("p has NaN or infinite values.")
            if np.any(p < 0):
                raise ValueError(f"p must be nonnegative, got min(p) = {p.min():.3g}.")
            if abs(p.sum() - 1.0) > WEIGHT_SUM_ATOL:
                raise ValueError(f"p must sum to 1, got sum(p) = {p.sum():.12g}.")
        for name, value in (("a", a), ("w", w), ("p", p)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def size(self) -> int:
        """Number of particles ``M``."""
        return self.a.shape[0]

    @property
    def features(self) -> int:
        """Feature dimension ``k``."""
        return self.a.shape[1]

    @property
    def dim(self) -> int:
        """Columns of ``w`` (``d``, or ``d + 1`` with a bias)."""
        return self.w.shape[1]

    def tensors(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"):
        """``(a, w, p)`` as torch tensors of shapes (M, k), (M, d), (M,)."""
        return tuple(torch.as_tensor(np.array(x), dtype=dtype, device=device) for x in (self.a, self.w, self.p))

    def flat(self) -> np.ndarray:
        """Particle-major flat parameters ``[a_1, w_1, a_2, w_2, …]``, shape (M·(k+d),)."""
        return np.concatenate([self.a, self.w], axis=1).reshape(-1)

    def with_flat(self, theta: np.ndarray) -> "ParticleMeasure":
        """The measure with the same weights and particle-major flat parameters ``theta``."""
        theta = np.asarray(theta, dtype=np.float64).reshape(self.size, self.features + self.dim)
        return ParticleMeasure(theta[:, : self.features], theta[:, self.features :], self.p)

    def permuted(self, order: np.ndarray) -> "ParticleMeasure":
        """The same measure with its particles listed in ``order``."""
        return ParticleMeasure(self.a[order], self.w[order], self.p[order])

    def save(self, path: str | os.PathLike) -> None:
        """Write ``a``, ``w``, ``p`` to an ``.npz`` file, atomically."""
        save_npz(path, a=self.a, w=self.w, p=self.p)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ParticleMeasure":
        """Read a measure from an ``.npz`` with arrays ``a`` (M, k), ``w`` (M, d), optional ``p`` (M,).

        Raises:
            ValueError: on any malformed file or invalid measure (the message names the file).
        """
        arrays = load_npz(path, required=("a", "w"), optional=("p",), what="measure")
        try:
            return cls(arrays["a"], arrays["w"], arrays.get("p"))
        except ValueError as err:
            raise ValueError(f"measure file {str(path)!r}: {err}") from None


def _finite_matrix(x, name: str) -> np.ndarray:
    try:
        arr = np.array(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array.") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has NaN or infinite values.")
    return arr
