"""The problem file (TOML) → a validated :class:`ProblemSpec` → an :class:`AttentionLandscape`.

Tables and keys (see README, "The problem file")::

    [input]       law = "gaussian" | "sphere" | "empirical";  dim = d;  data = "x.npy"
    [teacher]     activation = "erf";  c = [[...]];  u = [[...]]   (or file = "teacher.npz")
    [model]       activation = "erf";  features = k;  bias = false
    [task]        noise = τ;  prompt_length = "inf" | N;  loss_star = value
    [expectation] method = "exact" | "monte_carlo" | "empirical";  samples = n;  seed = s;
                  hermite_order = "auto" | T;  hermite_step = h;  fourth_moment_samples = n4;
                  singular_rtol = r;  ridge = λ (off by default)

The tables ``[init]``, ``[dynamics]`` and ``[analysis]`` belong to other commands; they are
accepted here and handed on untouched. Every other table or key is an error that names it.
Relative paths resolve from the TOML file's folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..landscape import DEFAULT_SINGULAR_RTOL, AttentionLandscape
from ..model.activations import Activation, get_activation
from ..model.expectations import (
    AUTO_ORDERS,
    DEFAULT_FOURTH_MOMENT_SAMPLES,
    ExactGaussianExpectation,
    SampledExpectation,
    choose_quadrature,
)
from ..model.kernels import HermiteQuadrature
from ..model.laws import EmpiricalLaw, GaussianLaw, InputLaw, SphereLaw
from ..model.teacher import Teacher
from .files import check_memory, load_npy, load_npz, read_toml
from .schema import LARGEST, boolean, choice, integer, known, number, short, table

__all__ = ["ProblemSpec", "load_problem", "parse_problem", "DEFAULT_MC_SAMPLES"]

#: default sample size of the Monte Carlo backend.
DEFAULT_MC_SAMPLES = 100_000
#: most values a sample (samples × dim) may hold: 2³⁰ float64 values, 8 GiB.
MAX_SAMPLE_VALUES = 2**30
#: largest Mehler-series order, and most entries of its coefficient table (512 MiB).
MAX_HERMITE_ORDER = 4096
MAX_HERMITE_TABLE = 2**26
#: largest finite prompt length (beyond it 1/N is below float64 resolution: use "inf").
MAX_PROMPT_LENGTH = 2**53
#: bytes of memory per pair of neurons (particles and teacher neurons together) that an
#: evaluation holds at its peak: about 16 float64 arrays of shape (M + L, M + L) (the kernel
#: matrices, their derivatives and the error estimates; measured: the peak RSS of ``evaluate``
#: grows by 128 bytes per pair from M = 1000 to 2000).
PAIR_BYTES = 128

KNOWN_KEYS: dict[str, set[str]] = {
    "input": {"law", "dim", "data"},
    "teacher": {"activation", "c", "u", "file"},
    "model": {"activation", "features", "bias"},
    "task": {"noise", "prompt_length", "loss_star"},
    "expectation": {
        "method",
        "samples",
        "seed",
        "hermite_order",
        "hermite_step",
        "fourth_moment_samples",
        "singular_rtol",
        "ridge",
    },
}
#: tables that other commands define; every command accepts them.
COMMAND_TABLES = ("init", "dynamics", "analysis", "prompts")


@dataclass(frozen=True, eq=False)
class ProblemSpec:
    """A parsed problem file.

    Attributes:
        law: the input law; teacher: the teacher network; activation: the student's σ.
        features: ``k``; bias: student bias column; noise: ``τ``; prompt_length: ``N``.
        loss_star: stated minimum or None; method: ``"exact"`` or ``"monte_carlo"``.
        samples: Monte Carlo sample size (None: all rows of an empirical law).
        seed: sample seed; quadrature: Mehler-series rule; fourth_samples: ``Q_µ`` sample size.
        auto_order: ``hermite_order = "auto"`` (the default): given a measure, :meth:`expectation`
            picks the order by :func:`~landscape.model.expectations.choose_quadrature`;
            without one, ``quadrature`` (order 128) is used.
        singular_rtol: singularity threshold of Σ_µµ.
        ridge: ridge ``λ`` added to Σ_µµ (0: off; see :class:`AttentionLandscape`).
        tables: the raw ``[init]``, ``[dynamics]``, ``[analysis]`` tables.
        source: the file it came from, if any.
    """

    law: InputLaw
    teacher: Teacher
    activation: Activation
    features: int
    bias: bool = False
    noise: float = 0.0
    prompt_length: float = math.inf
    loss_star: float | None = None
    method: str = "exact"
    samples: int | None = DEFAULT_MC_SAMPLES
    seed: int = 0
    quadrature: HermiteQuadrature = field(default_factory=HermiteQuadrature)
    fourth_samples: int = DEFAULT_FOURTH_MOMENT_SAMPLES
    singular_rtol: float = DEFAULT_SINGULAR_RTOL
    ridge: float = 0.0
    tables: dict = field(default_factory=dict)
    source: Path | None = None
    auto_order: bool = False

    def expectation(
        self, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu", weights: np.ndarray | None = None,
        headroom: float = 1.0,
    ):
        """The expectation backend this spec asks for.

        With ``auto_order`` and ``weights`` (the measure's ``w``, (M, d) or (M, d+1)), the exact
        backend's Mehler order is chosen for them (``headroom`` scales them first) and the
        choice is in its ``describe()``; else ``quadrature``.
        """
        if self.method == "exact":
            quadrature, choice = self.quadrature, None
            if self.auto_order and weights is not None:
                quadrature, choice = choose_quadrature(
                    self.teacher, self.activation, self.bias, weights, self.quadrature.step, headroom=headroom
                )
            backend = ExactGaussianExpectation(
                self.teacher, self.activation, self.bias, quadrature, self.fourth_samples, self.seed, dtype, device
            )
            backend.order_choice = choice
            return backend
        x = self.law.sample(self.samples, self.seed)
        return SampledExpectation(self.teacher, self.activation, x, self.bias, dtype=dtype, device=device)

    def check_memory(self, particles: int, what: str) -> None:
        """Refuse, before allocating, a measure of ``particles`` particles whose evaluation against
        this problem's teacher would not fit the memory cap (:func:`landscape.io.files.check_memory`):
        about :data:`PAIR_BYTES` · (M + L)² bytes.

        Args:
            particles: ``M``.
            what: the setting that gives ``M``, for the message (``"[init] particles = 100000"``).

        Raises:
            ValueError: one line naming ``what`` and the memory it would need.
        """
        pairs = (particles + self.teacher.neurons) ** 2
        check_memory(PAIR_BYTES * pairs, f"{what} (M = {particles} particles, L = {self.teacher.neurons} teacher "
                                         "neurons): the (M + L)² kernel matrices")

    def landscape(
        self, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu", weights: np.ndarray | None = None,
        headroom: float = 1.0,
    ) -> AttentionLandscape:
        """The attention landscape of this problem (warns ``PrecisionWarning`` below float64); ``weights``,
        ``headroom``: see :meth:`expectation`."""
        return AttentionLandscape(
            self.teacher,
            self.expectation(dtype, device, weights, headroom),
            noise=self.noise,
            prompt_length=self.prompt_length,
            singular_rtol=self.singular_rtol,
            loss_star=self.loss_star,
            ridge=self.ridge,
        )


def load_problem(path: str | Path) -> ProblemSpec:
    """Read and validate a problem file.

    Raises:
        ValueError: one message naming the file and the offending table or key.
    """
    path = Path(path)
    return parse_problem(read_toml(path, "problem"), base=path.parent, source=path)


def parse_problem(raw: dict[str, Any], base: Path = Path("."), source: Path | None = None) -> ProblemSpec:
    """Validate a problem given as a dict (the parsed TOML). See :func:`load_problem`."""
    for name, value in raw.items():
        if name in COMMAND_TABLES:
            table(value, name)
            continue
        if name not in KNOWN_KEYS:
            raise ValueError(f"unknown table [{name}] in the problem file.")
        known(table(value, name), name, sorted(KNOWN_KEYS[name]))
    if "teacher" not in raw:
        raise ValueError("the problem file needs a [teacher] table.")
    inp, tea, mod = raw.get("input", {}), raw["teacher"], raw.get("model", {})
    task, exp = raw.get("task", {}), raw.get("expectation", {})

    teacher_activation = _activation(tea, "teacher")
    c, u = _teacher_arrays(tea, base)
    teacher = Teacher(c, u, teacher_activation)
    check_memory(PAIR_BYTES * teacher.neurons**2,
                 f"[teacher] with L = {teacher.neurons} neurons: the L×L teacher kernel matrices")
    dim = integer(inp, "input", "dim", teacher.dim, minimum=1)
    if dim != teacher.dim:
        raise ValueError(f"[input] dim = {dim} but the teacher's u has {teacher.dim} columns.")
    law = _law(inp, dim, base)

    activation = _activation(mod, "model", default=teacher_activation)
    features = integer(mod, "model", "features", teacher.features, minimum=1)
    bias = boolean(mod, "model", "bias", False)

    noise = number(task, "task", "noise", 0.0, minimum=0.0, maximum=LARGEST)
    prompt_length = _prompt_length(task)
    loss_star = number(task, "task", "loss_star", None, minimum=-LARGEST, maximum=LARGEST)

    default_method = "exact" if law.name == "gaussian" else "monte_carlo"
    method = choice(exp, "expectation", "method", ("exact", "monte_carlo", "empirical"), default_method)
    if method == "exact" and law.name != "gaussian":
        raise ValueError(f"[expectation] method = \"exact\" needs law = \"gaussian\", got law = \"{law.name}\".")
    if method == "empirical" and law.name != "empirical":
        raise ValueError(f"[expectation] method = \"empirical\" needs law = \"empirical\", got law = \"{law.name}\".")
    default_samples = None if law.name == "empirical" else DEFAULT_MC_SAMPLES
    samples = integer(exp, "expectation", "samples", default_samples, minimum=1)
    if method == "empirical":
        method, samples = "monte_carlo", None
    seed = integer(exp, "expectation", "seed", 0, minimum=0)
    auto_order = exp.get("hermite_order", "auto") == "auto"
    if isinstance(exp.get("hermite_order"), str) and not auto_order:
        raise ValueError(f"[expectation] hermite_order must be \"auto\" or an integer ≥ 1, got {short(exp['hermite_order'])}.")
    order = HermiteQuadrature.order if auto_order else integer(exp, "expectation", "hermite_order", None, minimum=1)
    step = number(exp, "expectation", "hermite_step", HermiteQuadrature.step, minimum=1e-6)
    fourth = integer(exp, "expectation", "fourth_moment_samples", DEFAULT_FOURTH_MOMENT_SAMPLES, minimum=1)
    checked = max(AUTO_ORDERS) if auto_order else order  # "auto" may pick any order of the ladder
    _check_sizes(samples, fourth, dim, checked, step)
    _check_step(checked, step)
    rtol = number(exp, "expectation", "singular_rtol", DEFAULT_SINGULAR_RTOL, minimum=0.0)
    if not 0 < rtol < 1:
        raise ValueError(f"[expectation] singular_rtol must lie in (0, 1), got {rtol}.")
    ridge = number(exp, "expectation", "ridge", 0.0, minimum=0.0, maximum=LARGEST)
    spec = ProblemSpec(
        law=law,
        teacher=teacher,
        activation=activation,
        features=features,
        bias=bias,
        noise=noise,
        prompt_length=prompt_length,
        loss_star=loss_star,
        method=method,
        samples=samples,
        seed=seed,
        quadrature=HermiteQuadrature(order, step),
        auto_order=auto_order,
        fourth_samples=fourth,
        singular_rtol=rtol,
        ridge=ridge,
        tables={name: dict(raw[name]) for name in COMMAND_TABLES if name in raw},
        source=source,
    )
    init = raw.get("init")
    if isinstance(init, dict) and isinstance(init.get("particles"), int) and not isinstance(init["particles"], bool):
        spec.check_memory(init["particles"], f"[init] particles = {init['particles']}")
    return spec


# --------------------------------------------------------------------- helpers
def _activation(values: dict, name: str, default: Activation | None = None) -> Activation:
    value = values.get("activation")
    if value is None:
        if default is None:
            return get_activation("erf")
        return default
    if not isinstance(value, str):
        raise ValueError(f"[{name}] activation must be a string, got {value!r}.")
    try:
        return get_activation(value)
    except ValueError as err:
        raise ValueError(f"[{name}] {err}") from None


def _teacher_arrays(values: dict, base: Path) -> tuple[np.ndarray, np.ndarray]:
    if "file" in values:
        if "c" in values or "u" in values:
            raise ValueError("[teacher] gives both file and c/u; use one.")
        if not isinstance(values["file"], str):
            raise ValueError(f"[teacher] file must be a path string, got {values['file']!r}.")
        arrays = load_npz(base / values["file"], required=("c", "u"), what="teacher")
        return arrays["c"], arrays["u"]
    missing = [key for key in ("c", "u") if key not in values]
    if missing:
        raise ValueError(f"[teacher] needs c and u (or file); missing {', '.join(missing)}.")
    return _matrix(values["c"], "[teacher] c"), _matrix(values["u"], "[teacher] u")


def _matrix(value: Any, name: str) -> np.ndarray:
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise ValueError(f"{name} must be a non-empty list of lists of numbers.")
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) for row in value for x in row):
        raise ValueError(f"{name} must hold numbers only.")
    if len({len(row) for row in value}) != 1 or not value[0]:
        raise ValueError(f"{name} must be rectangular with at least one column.")
    try:
        arr = np.array(value, dtype=np.float64)
    except OverflowError:  # an integer beyond the float range
        raise ValueError(f"{name} has a number beyond the float64 range.") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has NaN or infinite values.")
    if np.any(np.abs(arr) > LARGEST):
        raise ValueError(f"{name} has an entry of magnitude above {LARGEST:g} (its products would overflow float64).")
    return arr


def _law(values: dict, dim: int, base: Path) -> InputLaw:
    law = choice(values, "input", "law", ("gaussian", "sphere", "empirical"), "gaussian")
    if law != "empirical":
        if "data" in values:
            raise ValueError(f"[input] data is only used with law = \"empirical\", got law = \"{law}\".")
        return GaussianLaw(dim) if law == "gaussian" else SphereLaw(dim)
    if not isinstance(values.get("data"), str):
        raise ValueError("[input] law = \"empirical\" needs data = \"path/to/x.npy\".")
    data = load_npy(base / values["data"], "[input] data")
    return EmpiricalLaw(dim, data)



def _check_sizes(samples: int | None, fourth: int, dim: int, order: int, step: float) -> None:
    """Refuse sizes that could only end in an out-of-memory crash or an endless run."""
    for key, count in (("samples", samples), ("fourth_moment_samples", fourth)):
        if count is not None and count * dim > MAX_SAMPLE_VALUES:
            raise ValueError(
                f"[expectation] {key} = {count} with dim = {dim} needs {count * dim} values, "
                f"more than the limit {MAX_SAMPLE_VALUES}."
            )
    if order > MAX_HERMITE_ORDER:
        raise ValueError(f"[expectation] hermite_order must be ≤ {MAX_HERMITE_ORDER}, got {order}.")
    nodes = 2 * math.ceil((2.0 * math.sqrt(order + 1) + 12.0) / step) + 1  # as in HermiteQuadrature
    if nodes * (order + 1) > MAX_HERMITE_TABLE:
        raise ValueError(
            f"[expectation] hermite_step = {step:g} with hermite_order = {order} needs a table of "
            f"{nodes * (order + 1)} entries, more than the limit {MAX_HERMITE_TABLE}; use a larger step."
        )





def max_hermite_step(order: int) -> float:
    """Largest trapezoid step that resolves the Hermite functions up to ``order``: ``π/(√(order+1) + 3)``.

    ``He_n(g)e^{−g²/4}`` oscillates with wavenumber up to about ``√(n+1)``; at this step the
    coefficients of erf, tanh and sigmoid at ``|w| ≤ 1`` are within 1e-5 of converged (order
    1 to 2048), at twice it off by 1e-3 to 1e-2.
    """
    return math.pi / (math.sqrt(order + 1) + 3.0)


def _check_step(order: int, step: float) -> None:
    """Refuse a trapezoid step too coarse for the Hermite functions of the order."""
    bound = max_hermite_step(order)
    if step > bound:
        raise ValueError(
            f"[expectation] hermite_step must be ≤ π/(√(hermite_order+1) + 3) = {bound:.4g} at hermite_order = "
            f"{order} (coarser steps do not resolve the Hermite functions: coefficient errors ≥ 1e-3), got {step:g}."
        )


def _prompt_length(table: dict) -> float:
    value = table.get("prompt_length", "inf")
    if value == "inf":
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"[task] prompt_length must be \"inf\" or an integer ≥ 1, got {short(value)}.")
    if value > MAX_PROMPT_LENGTH:
        raise ValueError(f"[task] prompt_length must be ≤ 2**53 (use \"inf\" for the limit), got {short(value)}.")
    return value

