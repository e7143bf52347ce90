"""Session settings and a seeded registry of problems and measures shared by the tests."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
torch.set_default_dtype(torch.float64)

from landscape import (  # noqa: E402
    AttentionLandscape,
    ExactGaussianExpectation,
    ParticleMeasure,
    SampledExpectation,
    Teacher,
    cases,  # noqa: E402
    get_activation,
)

#: The §9 orthogonal erf teacher (k° = 2, d = 3, u_l = 1.5 e_l) as a problem-file table.
ERF_TEACHER_TOML = """
[teacher]
activation = "erf"
c = [[1.0, 0.0], [0.0, 1.0]]
u = [[1.5, 0.0, 0.0], [0.0, 1.5, 0.0]]
"""

#: A run with every source of randomness and every event kind (stochastic birth–death,
#: isotropic kicks): 12 particles; format with ``steps``, ``checkpoint_every``, ``snapshot_every``.
KICKED_RUN_TOML = """[init]
particles = 12
seed = 5
[dynamics]
steps = {steps}
step_size = 0.02
integrator = "rk4"
checkpoint_every = {checkpoint_every}
record_every = 3
snapshot_every = {snapshot_every}
seed = 11
[dynamics.birth_death]
kind = "stochastic"
rate = 5.0
[dynamics.perturbation]
kind = "isotropic"
g_thr = 0.05
t_thr = 0.5
radius = 0.01
"""

def orthogonal_teacher(k0: int, d: int, scale: float = 1.0, activation: str = "erf") -> Teacher:
    """docs/theory.md §9 (:func:`landscape.cases.orthogonal_teacher`) with ``s = 1`` by default."""
    return cases.orthogonal_teacher(k0, d, scale, activation)


def random_teacher(rng: np.random.Generator, neurons: int, k0: int, d: int, activation: str = "erf") -> Teacher:
    return Teacher(rng.standard_normal((neurons, k0)), rng.standard_normal((neurons, d)) / math.sqrt(d), activation)


def random_measure(rng: np.random.Generator, m: int, k: int, d: int, uniform: bool = True) -> ParticleMeasure:
    p = None if uniform else rng.dirichlet(np.ones(m))
    return ParticleMeasure(rng.standard_normal((m, k)), rng.standard_normal((m, d)) / math.sqrt(d), p)


def exact_landscape(teacher: Teacher, activation: str | None = None, **kwargs) -> AttentionLandscape:
    act = get_activation(activation or teacher.activation)
    bias = kwargs.pop("bias", False)
    backend_kwargs = {key: kwargs.pop(key) for key in ("quadrature", "fourth_samples", "seed") if key in kwargs}
    return AttentionLandscape(teacher, ExactGaussianExpectation(teacher, act, bias, **backend_kwargs), **kwargs)


def sampled_landscape(teacher: Teacher, x: np.ndarray, activation: str | None = None, **kwargs) -> AttentionLandscape:
    act = get_activation(activation or teacher.activation)
    bias = kwargs.pop("bias", False)
    return AttentionLandscape(teacher, SampledExpectation(teacher, act, x, bias), **kwargs)


def dead_neuron_saddle(k0: int = 3, d: int = 5, scale: float = 1.0) -> tuple[Teacher, ParticleMeasure]:
    """docs/theory.md §9: k° − 1 features learned, the last particle dead at ``s e_{k°+1}``
    (:mod:`landscape.cases`), with its teacher."""
    return cases.orthogonal_teacher(k0, d, scale), cases.dead_neuron_saddle(k0, d, scale)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
