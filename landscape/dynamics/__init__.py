"""Dynamics (docs/theory.md §6): the particle Wasserstein gradient flow, a finite timescale ratio,
birth–death, saddle-escape perturbations; in memory (:func:`simulate`) and as run directories
with checkpoints and resume (:func:`train`, a file layer over the same engine).

Modules in flow order: :mod:`.config` (the ``[init]``/``[dynamics]`` tables),
:mod:`.initialisation`, :mod:`.flow` (the vector field, its Jacobian and the energy identity),
:mod:`.integrators` (explicit Runge–Kutta), :mod:`.rosenbrock` (linearly implicit, for stiff
stretches), :mod:`.birth_death`, :mod:`.perturbation`, :mod:`.simulate` (the engine, in
memory), :mod:`.ensemble` (many runs of one shape batched in lock step), :mod:`.trajectory` (its rows, and the one ``trajectory.csv`` reader),
:mod:`.rundir` (the files of a run), :mod:`.train` (the file layer).
"""

from .config import BirthDeathConfig, DynamicsConfig, InitConfig, PerturbationConfig, parse_dynamics, parse_init
from .ensemble import simulate_ensemble
from .flow import FieldValue, Layout, Linearization, ParticleFlow
from .initialisation import initial_measure
from .integrators import TABLEAUS, adaptive_step, rk_step
from .rosenbrock import adaptive_rosenbrock_step, rosenbrock23_step
from .simulate import FlowState, Observer, RunResult, Simulation, simulate
from .train import train
from .trajectory import COLUMNS, Trajectory, read_trajectory

__all__ = [
    "COLUMNS",
    "BirthDeathConfig",
    "DynamicsConfig",
    "FieldValue",
    "FlowState",
    "InitConfig",
    "Layout",
    "Linearization",
    "Observer",
    "ParticleFlow",
    "PerturbationConfig",
    "RunResult",
    "Simulation",
    "TABLEAUS",
    "Trajectory",
    "adaptive_rosenbrock_step",
    "adaptive_step",
    "initial_measure",
    "parse_dynamics",
    "parse_init",
    "read_trajectory",
    "rk_step",
    "rosenbrock23_step",
    "simulate",
    "simulate_ensemble",
    "train",
]
