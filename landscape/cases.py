r"""The one registry of known cases: the problems and measures of docs/theory.md §9, and the
benchmark measures near them. Tests, benchmarks, the bundled examples and the claims build
their cases here.

Names (one convention, as in the problem file and the objects): ``neurons`` is the teacher's
neuron count ``k°`` (:attr:`Teacher.neurons`), ``dim`` the input dimension ``d``
(``[input] dim``, :attr:`ParticleMeasure.dim`), ``features`` the student's ``k``
(``[model] features``, :attr:`ParticleMeasure.features`; ``k = k°`` by default), ``scale``
the teacher's norm ``s``.

The §9 orthogonal teacher: ``c_l = e_l``, ``u_l = s e_l`` (``l = 1..k°``), Gaussian inputs,
exact expectations. Its global minimum is the teacher itself (:func:`teacher_measure`); with
``dead`` particles moved to unused directions ``s e_m``, ``m > k°``, it is a strict saddle
(:func:`dead_neuron_saddle`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .landscape import AttentionLandscape
from .model.activations import get_activation
from .model.expectations import ExactGaussianExpectation
from .model.measure import ParticleMeasure
from .model.teacher import Teacher

__all__ = [
    "orthogonal_teacher",
    "orthogonal_teacher_tables",
    "orthogonal_teacher_landscape",
    "teacher_measure",
    "dead_neuron_saddle",
    "near_teacher_measure",
    "EXAMPLE_MEASURES",
    "example_measures",
]


def orthogonal_teacher(neurons: int = 3, dim: int = 6, scale: float = 1.5, activation: str = "erf") -> Teacher:
    """docs/theory.md §9: ``c = I_{k°}``, ``u_l = s e_l`` (``u`` of shape (k°, d)).

    Raises:
        ValueError: ``dim < neurons`` (the teacher directions must be orthogonal).
    """
    if dim < neurons:
        raise ValueError(f"dim must be at least neurons for orthogonal teacher directions, got dim={dim}, neurons={neurons}.")
    return Teacher(np.eye(neurons), scale * np.eye(dim)[:neurons], activation)


def orthogonal_teacher_tables(
    neurons: int,
    dim: int,
    scale: float = 1.5,
    activation: str = "erf",
    noise: float = 0.0,
    prompt_length: int | str = "inf",
    features: int | None = None,
) -> dict[str, Any]:
    """The §9 problem as problem-file tables (``[input]``, ``[teacher]``, ``[model]``, ``[task]``, ``[expectation]``)."""
    if dim < neurons:
        raise ValueError(f"dim must be at least neurons for orthogonal teacher directions, got dim={dim}, neurons={neurons}.")
    return {
        "input": {"law": "gaussian", "dim": dim},
        "teacher": {"activation": activation, "c": np.eye(neurons).tolist(), "u": (scale * np.eye(dim)[:neurons]).tolist()},
        "model": {"activation": activation, "features": features or neurons},
        "task": {"noise": noise, "prompt_length": prompt_length},
        "expectation": {"method": "exact"},
    }


def orthogonal_teacher_landscape(
    neurons: int = 3, dim: int = 6, scale: float = 1.5, activation: str = "erf", noise: float = 0.0
) -> AttentionLandscape:
    """The §9 landscape at ``N = ∞`` with exact Gaussian expectations.

    Raises:
        ValueError: when ``dim < neurons + 1`` (a dead direction is needed).
    """
    if dim < neurons + 1:
        raise ValueError(f"dim must exceed neurons so a dead direction exists, got dim={dim}, neurons={neurons}.")
    act = get_activation(activation)
    teacher = Teacher(np.eye(neurons), scale * np.eye(dim)[:neurons], act)
    return AttentionLandscape(teacher, ExactGaussianExpectation(teacher, act), noise=noise)


def teacher_measure(neurons: int = 3, dim: int = 6, scale: float = 1.5, a: np.ndarray | None = None) -> ParticleMeasure:
    """The student equal to the teacher (``M = k = k°`` particles at ``s e_l``), a global minimum.

    ``a`` (k, k) may be any invertible matrix (the GL(k) orbit); identity by default.
    """
    a = np.eye(neurons) if a is None else np.asarray(a, dtype=np.float64)
    return ParticleMeasure(a, scale * np.eye(dim)[:neurons])


def dead_neuron_saddle(neurons: int = 3, dim: int = 6, scale: float = 1.5, dead: int = 1) -> ParticleMeasure:
    """``M = k = k°``; ``k° − dead`` particles on teacher neurons, the rest at ``s e_m``, ``m > k°``: a strict saddle.

    Raises:
        ValueError: unless ``1 ≤ dead < k°`` and ``k° + dead ≤ d``.
    """
    if not 1 <= dead < neurons or neurons + dead > dim:
        raise ValueError(f"need 1 ≤ dead < k° and k° + dead ≤ d, got dead = {dead}, k° = {neurons}, d = {dim}.")
    rows = [*range(neurons - dead), *range(neurons, neurons + dead)]
    return ParticleMeasure(np.eye(neurons), scale * np.eye(dim)[rows])


def near_teacher_measure(particles: int, neurons: int, dim: int, scale: float = 1.5, spread: float = 0.3, seed: int = 0) -> ParticleMeasure:
    """The benchmark measure: the teacher's neurons repeated to ``M = particles``, plus Gaussian noise of size ``spread``.

    ``a`` (M, k°), ``w`` (M, d); ``n = M·(k° + d)`` parameters.
    """
    rng = np.random.default_rng(seed)
    base = teacher_measure(neurons, dim, scale)
    idx = np.arange(particles) % neurons
    return ParticleMeasure(
        base.a[idx] + spread * rng.standard_normal((particles, neurons)), base.w[idx] + spread * rng.standard_normal((particles, dim))
    )


#: the measures bundled in ``landscape/examples/`` (k° = 3, d = 6, s = 1.5; regenerated by ``make_examples.py``).
EXAMPLE_MEASURES = ("teacher", "saddle", "probes", "random")


def example_measures(neurons: int = 3, dim: int = 6, scale: float = 1.5) -> dict[str, ParticleMeasure]:
    """The bundled example measures, by name (:data:`EXAMPLE_MEASURES`).

    ``teacher``: the global minimum, ``L = ½τ²``; ``saddle``: the last neuron dead at
    ``s e_{k°+1}``; ``probes``: the dead neuron turned towards the missing direction, and the
    missing neuron (as ``--probes``); ``random``: six particles from a seeded Gaussian (not critical).
    """
    eye = np.eye(dim)
    last = neurons - 1
    probes = ParticleMeasure(
        np.tile(np.eye(neurons)[last], (2, 1)), scale * np.stack([eye[neurons] + 0.1 * eye[last], eye[last]])
    )
    rng = np.random.default_rng(0)
    return {
        "teacher": teacher_measure(neurons, dim, scale),
        "saddle": dead_neuron_saddle(neurons, dim, scale),
        "probes": probes,
        "random": ParticleMeasure(rng.standard_normal((6, neurons)), rng.standard_normal((6, dim))),
    }
