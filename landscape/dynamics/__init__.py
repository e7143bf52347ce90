"""Dynamics (THEORY.md §6): the particle Wasserstein gradient flow, a finite timescale ratio,
birth–death, saddle-escape perturbations, and run directories with checkpoints and resume.

Modules: :mod:`.config` (the ``[init]``/``[dynamics]`` tables), :mod:`.initialisation`,
:mod:`.flow` (the vector field and the energy identity), :mod:`.integrators`,
:mod:`.birth_death`, :mod:`.perturbation`, :mod:`.rundir`, :mod:`.train` (the driver).
"""

from .config import BirthDeathConfig, DynamicsConfig, InitConfig, PerturbationConfig, parse_dynamics, parse_init
from .flow import FieldValue, Layout, ParticleFlow
from .initialisation import initial_measure
from .integrators import TABLEAUS, adaptive_step, rk_step
from .train import RunResult, train

__all__ = [
    "BirthDeathConfig",
    "DynamicsConfig",
    "FieldValue",
    "InitConfig",
    "Layout",
    "ParticleFlow",
    "PerturbationConfig",
    "RunResult",
    "TABLEAUS",
    "adaptive_step",
    "initial_measure",
    "parse_dynamics",
    "parse_init",
    "rk_step",
    "train",
]
