"""The attention landscape of Kim & Suzuki (ICML 2024) on particle measures.

Data flows one way: measure → problem (teacher, law, expectation backend) → landscape
(losses, first variation, velocity) → operators and solvers → verdicts → reports.

Example:
    >>> import numpy as np
    >>> from landscape import AttentionLandscape, ExactGaussianExpectation, ParticleMeasure, Teacher, get_activation
    >>> teacher = Teacher(np.eye(2), np.eye(3)[:2], "erf")
    >>> landscape = AttentionLandscape(teacher, ExactGaussianExpectation(teacher, get_activation("erf")))
    >>> round(landscape.evaluate(ParticleMeasure(np.eye(2), np.eye(3)[:2])).loss, 12)
    0.0
"""

from .io.problem import ProblemSpec, load_problem, parse_problem
from .landscape import AttentionLandscape, Evaluation, SingularMomentError
from .model.activations import Activation, get_activation
from .model.attention import LinearSelfAttention, simulate_risk
from .model.expectations import ExactGaussianExpectation, SampledExpectation
from .model.kernels import HermiteQuadrature, gaussian_kernel
from .model.laws import EmpiricalLaw, GaussianLaw, SphereLaw
from .model.measure import ParticleMeasure
from .model.teacher import Teacher

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "AttentionLandscape",
    "EmpiricalLaw",
    "Evaluation",
    "ExactGaussianExpectation",
    "GaussianLaw",
    "HermiteQuadrature",
    "LinearSelfAttention",
    "ParticleMeasure",
    "ProblemSpec",
    "SampledExpectation",
    "SingularMomentError",
    "SphereLaw",
    "Teacher",
    "gaussian_kernel",
    "get_activation",
    "load_problem",
    "parse_problem",
    "simulate_risk",
]
