"""Activation functions σ of the teacher and the student network.

An :class:`Activation` is a named, elementwise torch function with the two facts the
rest of the toolkit needs about it: whether it is odd (particles at ``w`` and ``-w``
then carry the same feature up to sign) and whether it is positively homogeneous
(ReLU: ``σ(cz) = c σ(z)`` for ``c > 0``, which adds a null direction per particle).

Built-ins: ``erf``, ``relu``, ``tanh``, ``sigmoid``, ``gelu``. A user-supplied σ is any
smooth torch function: ``Activation("softplus", torch.nn.functional.softplus)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Activation", "get_activation", "BUILTIN_ACTIVATIONS"]


@dataclass(frozen=True)
class Activation:
    """An elementwise activation ``σ: R → R``.

    Attributes:
        name: identifier; two activations with the same name are treated as equal.
        fn: torch function applied elementwise; must be differentiable twice.
        odd: ``σ(−z) = −σ(z)``.
        homogeneous: ``σ(cz) = cσ(z)`` for ``c > 0`` (ReLU).
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    odd: bool = False
    homogeneous: bool = False

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)


BUILTIN_ACTIVATIONS: dict[str, Activation] = {
    "erf": Activation("erf", torch.erf, odd=True),
    "relu": Activation("relu", torch.relu, homogeneous=True),
    "tanh": Activation("tanh", torch.tanh, odd=True),
    "sigmoid": Activation("sigmoid", torch.sigmoid),
    "gelu": Activation("gelu", torch.nn.functional.gelu),
}


def get_activation(spec: str | Activation) -> Activation:
    """Return the activation named ``spec`` (or ``spec`` itself if already one).

    Raises:
        ValueError: if the name is not a built-in activation.
    """
    if isinstance(spec, Activation):
        return spec
    try:
        return BUILTIN_ACTIVATIONS[spec]
    except (KeyError, TypeError):
        known = ", ".join(sorted(BUILTIN_ACTIVATIONS))
        raise ValueError(f"unknown activation {spec!r}; expected one of: {known}.") from None
