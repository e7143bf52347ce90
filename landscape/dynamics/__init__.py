"""Dynamics (docs/theory.md §6): the particle Wasserstein gradient flow, a finite timescale ratio,
birth–death, saddle-escape perturbations, and run directories with checkpoints and resume.

Modules: :mod:`.config` (the ``[init]``/``[dynamics]`` tables), :mod:`.initialisation`,
:mod:`.flow` (the vector field, its Jacobian and the energy identity), :mod:`.integrators`
(explicit Runge–Kutta), :mod:`.rosenbrock` (linearly implicit, for stiff stretches),
:mod:`.birth_death`, :mod:`.perturbation`, :mod:`.rundir`, :mod:`.train` (the driver).
"""

from .config import BirthDeathConfig, DynamicsConfig, InitConfig, PerturbationConfig, parse_dynamics, parse_init
from .flow import FieldValue, Layout, Linearization, ParticleFlow
from .initialisation import initial_measure
from .integrators import TABLEAUS, adaptive_step, rk_step
from .rosenbrock import adaptive_rosenbrock_step, rosenbrock23_step
from .train import RunResult, train

__all__ = [
    "BirthDeathConfig",
    "DynamicsConfig",
    "FieldValue",
    "InitConfig",
    "Layout",
    "Linearization",
    "ParticleFlow",
    "PerturbationConfig",
    "RunResult",
    "TABLEAUS",
    "adaptive_rosenbrock_step",
    "adaptive_step",
    "initial_measure",
    "parse_dynamics",
    "parse_init",
    "rk_step",
    "rosenbrock23_step",
    "train",
]
