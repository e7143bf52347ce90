"""Input laws ``D`` for ``x ∈ R^d``: Gaussian, uniform on the sphere of radius √d, empirical.

Each law draws a fixed, seeded sample for the sampled expectation backend; only the
Gaussian law admits the exact (kernel) backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["InputLaw", "GaussianLaw", "SphereLaw", "EmpiricalLaw"]


@dataclass(frozen=True)
class InputLaw:
    """Base class: a law on ``R^dim``."""

    dim: int

    name = "law"

    def sample(self, n: int, seed: int) -> np.ndarray:
        """A seeded sample, array of shape (n, dim)."""
        raise NotImplementedError


@dataclass(frozen=True)
class GaussianLaw(InputLaw):
    """``N(0, I_dim)``."""

    name = "gaussian"

    def sample(self, n: int, seed: int) -> np.ndarray:
        _check_count(n)
        return np.random.default_rng(seed).standard_normal((n, self.dim))


@dataclass(frozen=True)
class SphereLaw(InputLaw):
    """Uniform on the sphere of radius ``√dim`` (same second moment as the Gaussian)."""

    name = "sphere"

    def sample(self, n: int, seed: int) -> np.ndarray:
        _check_count(n)
        g = np.random.default_rng(seed).standard_normal((n, self.dim))
        return g * (np.sqrt(self.dim) / np.linalg.norm(g, axis=1, keepdims=True))


@dataclass(frozen=True, eq=False)
class EmpiricalLaw(InputLaw):
    """The uniform law on the rows of ``data`` (array of shape (n_rows, dim)).

    ``sample(n, seed)`` returns all rows when ``n`` is ``None`` or equals the row count,
    else a seeded subsample without replacement.
    """

    data: np.ndarray = None  # type: ignore[assignment]

    name = "empirical"

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"empirical input data must be a non-empty 2-D array, got shape {data.shape}.")
        if not np.issubdtype(data.dtype, np.number) or not np.all(np.isfinite(data)):
            raise ValueError("empirical input data must be finite numbers.")
        if data.shape[1] != self.dim:
            raise ValueError(f"empirical input data has {data.shape[1]} columns, expected dim = {self.dim}.")
        object.__setattr__(self, "data", data.astype(np.float64))

    def sample(self, n: int | None, seed: int) -> np.ndarray:
        rows = self.data.shape[0]
        if n is None or n == rows:
            return self.data
        _check_count(n)
        if n > rows:
            raise ValueError(f"cannot draw {n} samples without replacement from {rows} data rows.")
        return self.data[np.random.default_rng(seed).choice(rows, size=n, replace=False)]


def _check_count(n: int) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"sample size must be a positive integer, got {n!r}.")


def as_tensor(x: np.ndarray, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Copy an array to a tensor of the given dtype and device."""
    return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=device)
