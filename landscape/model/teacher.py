"""The true features ``f°(x) = Σ_l c_l σ(u_l·x)``: a finite teacher network."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .activations import Activation, get_activation

__all__ = ["Teacher"]


@dataclass(frozen=True, eq=False)
class Teacher:
    """A teacher network with ``L`` neurons and ``k°`` output features.

    Attributes:
        c: array of shape (L, k°), output weights ``c_l``.
        u: array of shape (L, d), input weights ``u_l``.
        activation: the teacher's σ (name or :class:`Activation`).

    Raises:
        ValueError: on shape mismatch or non-finite entries.
    """

    c: np.ndarray
    u: np.ndarray
    activation: Activation | str = "erf"

    def __post_init__(self) -> None:
        c = np.array(self.c, dtype=np.float64)
        u = np.array(self.u, dtype=np.float64)
        if c.ndim != 2 or u.ndim != 2 or c.shape[0] != u.shape[0] or c.shape[0] == 0:
            raise ValueError(f"teacher c (L×k°) and u (L×d) must be 2-D with equal L ≥ 1, got shapes {c.shape} and {u.shape}.")
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(u))):
            raise ValueError("teacher c and u must be finite.")
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "u", u)
        object.__setattr__(self, "activation", get_activation(self.activation))

    @property
    def neurons(self) -> int:
        """``L``."""
        return self.c.shape[0]

    @property
    def features(self) -> int:
        """``k°``."""
        return self.c.shape[1]

    @property
    def dim(self) -> int:
        """``d``."""
        return self.u.shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``f°(x)`` for ``x`` of shape (n, d); returns shape (n, k°)."""
        u = torch.as_tensor(self.u, dtype=x.dtype, device=x.device)
        c = torch.as_tensor(self.c, dtype=x.dtype, device=x.device)
        return self.activation(x @ u.T) @ c
