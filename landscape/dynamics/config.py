r"""The ``[init]`` and ``[dynamics]`` tables of a problem file, validated.

Keys and defaults (README, "Dynamics: train")::

    [init]       kind = "gaussian" | "region" | "file" | "saddle";  particles = 100;
                 scale = 1.0;  radius = 0.05;  seed = 0;  measure = "mu.npz";
                 saddle_tol = 1e-8
    [dynamics]   steps = 1000  (or  time = T);  step_size = 0.01;
                 integrator = "euler" | "heun" | "rk4" | "rk23" | "dopri5" | "rosenbrock23";
                 rtol = 1e-6;  atol = 1e-9;  timescale_ratio = "inf" | η;
                 krylov_rtol = rtol / 10;  krylov_maxiter = 200;
                 preconditioner = "deflation" | "none"   (rosenbrock23 only)
                 record_every = 1;  snapshot_every = 0;  checkpoint_every = 100;
                 checkpoint_seconds = 60.0  (also checkpoint when that much wall time passed; 0: off);
                 seed = 0
                 scheme = "landscape" | "prompts"  (prompts: only the record, snapshot and
                 checkpoint keys apply; the run is set by [prompts])
                 engine = "fast" | "reference"  (the field's closed forms where they apply, or autograd)
    [dynamics.birth_death]   kind = "none" | "wfr" | "stochastic";  rate = 1.0
    [dynamics.perturbation]  kind = "none" | "isotropic" | "hessian";  g_thr = 1e-3;
                             t_thr = 1.0;  radius = 1e-2
    [prompts]    (scheme = "prompts"; :mod:`.prompts`)  length = N (default: [task] prompt_length);
                 batch = 64;  steps = 1000  (or  time = T);  learning_rate = 0.01;
                 attention_rate = 1.0 | "inf";  train_prompts = "online" | P;  seed = 0;
                 precision = "float64" | "float32";  device = "cpu" | "cuda"

Every unknown key or wrong type is a ``ValueError`` naming the table and the key.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..io.files import resolve_path
from ..io.schema import choice, integer, known, number, short, table

__all__ = [
    "InitConfig",
    "BirthDeathConfig",
    "PromptsConfig",
    "PerturbationConfig",
    "DynamicsConfig",
    "parse_init",
    "parse_dynamics",
    "parse_prompts",
    "prompts_table",
    "INTEGRATORS",
    "ADAPTIVE_INTEGRATORS",
]

INIT_KINDS = ("gaussian", "region", "file", "saddle")
INTEGRATORS = ("euler", "heun", "rk4", "rk23", "dopri5", "rosenbrock23")
ADAPTIVE_INTEGRATORS = ("rk23", "dopri5", "rosenbrock23")
BIRTH_DEATH_KINDS = ("none", "wfr", "stochastic")
PERTURBATION_KINDS = ("none", "isotropic", "hessian")
#: field engines (:class:`~landscape.dynamics.flow.ParticleFlow`): closed forms where they apply, or autograd.
ENGINES = ("fast", "reference")
#: preconditioners of rosenbrock23's GMRES solves (:mod:`.krylov`): deflation of the stiff cluster, or none.
PRECONDITIONERS = ("deflation", "none")
SCHEMES = ("landscape", "prompts")
PRECISIONS = ("float64", "float32")
DEVICES = ("cpu", "cuda")
#: the ``[dynamics]`` keys a ``scheme = "prompts"`` run reads (the rest of its settings are in ``[prompts]``).
PROMPTS_DYNAMICS_KEYS = ("scheme", "record_every", "snapshot_every", "checkpoint_every", "checkpoint_seconds")


@dataclass(frozen=True)
class InitConfig:
    """How the initial measure is made.

    Attributes:
        kind: ``gaussian`` (``a ~ N(0, scale² I_k)``, ``w ~ N(0, scale² I_d / d)``),
            ``region`` (one such draw, every particle within ``radius`` of it),
            ``file`` (the measure file), ``saddle`` (the file, checked to be critical).
        particles: ``M`` (gaussian and region).
        scale: size of the draw; radius: spread of the region (same units).
        seed: seed of the draw.
        measure: absolute path of the measure file (file and saddle), or None.
        saddle_tol: the largest stationarity residual a ``saddle`` start may have.
    """

    kind: str = "gaussian"
    particles: int = 100
    scale: float = 1.0
    radius: float = 0.05
    seed: int = 0
    measure: str | None = None
    saddle_tol: float = 1e-8


@dataclass(frozen=True)
class BirthDeathConfig:
    """Birth–death: ``none``, the Wasserstein–Fisher–Rao weight flow ``wfr``, or ``stochastic`` kill/clone at ``rate`` α."""

    kind: str = "none"
    rate: float = 1.0


@dataclass(frozen=True)
class PerturbationConfig:
    """Saddle-escape kicks when ``‖∇δL/δµ‖_{L²(µ)} < g_thr`` and none came within ``t_thr``; size ``radius``."""

    kind: str = "none"
    g_thr: float = 1e-3
    t_thr: float = 1.0
    radius: float = 1e-2


@dataclass(frozen=True)
class DynamicsConfig:
    """The flow and its bookkeeping.

    Attributes:
        steps: number of steps, or None when ``time`` is given.
        time: final time, or None when ``steps`` is given.
        step_size: the fixed step (the first trial step of an adaptive integrator).
        integrator: one of :data:`INTEGRATORS`; ``rk23``, ``dopri5`` and ``rosenbrock23`` are
            adaptive; ``rosenbrock23`` (linearly implicit, :mod:`.rosenbrock`) is the one for
            stiff stretches, where ``Σ_µµ`` is nearly singular.
        rtol, atol: error tolerances of the adaptive integrators.
        krylov_rtol: relative residual of rosenbrock23's linear solves (None: ``rtol / 10``).
        krylov_maxiter: Jacobian-vector products allowed per linear solve (rosenbrock23).
        preconditioner: ``deflation`` (each solve right-preconditioned by the largest Ritz
            values of ``J`` harvested from the step's earlier solves, :mod:`.krylov`) or ``none``
            (rosenbrock23); the same tolerances and certificates either way.
        timescale_ratio: ``η`` (``math.inf``: Γ = Γ*(µ), the landscape flow).
        record_every, snapshot_every, checkpoint_every: periods in steps (0: never).
        checkpoint_seconds: also checkpoint after the first step that ends this many wall-clock
            seconds after the last checkpoint (0: by step count only). A checkpoint only saves
            the state, so neither period changes the numbers of a run.
        seed: seed of the run's random generator (perturbations, stochastic birth–death).
        birth_death, perturbation: the sub-tables.
        scheme: ``landscape`` (this flow) or ``prompts`` (SGD of the real model on sampled
            prompts, :mod:`.prompts`, set by ``[prompts]``; only the record, snapshot and
            checkpoint keys apply).
        engine: ``fast`` (the closed-form field of :mod:`.fast_field` where it applies, else the
            reference) or ``reference`` (autograd); the same field to rounding.
    """

    steps: int | None = 1000
    time: float | None = None
    step_size: float = 0.01
    integrator: str = "rk4"
    rtol: float = 1e-6
    atol: float = 1e-9
    krylov_rtol: float | None = None
    krylov_maxiter: int = 200
    preconditioner: str = "deflation"
    timescale_ratio: float = math.inf
    record_every: int = 1
    snapshot_every: int = 0
    checkpoint_every: int = 100
    checkpoint_seconds: float = 60.0
    seed: int = 0
    birth_death: BirthDeathConfig = field(default_factory=BirthDeathConfig)
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)
    scheme: str = "landscape"
    engine: str = "fast"

    @property
    def adaptive(self) -> bool:
        return self.integrator in ADAPTIVE_INTEGRATORS

    def to_table(self) -> dict[str, Any]:
        """The resolved table, TOML-ready: ``None`` entries and the keys this integrator does not
        use dropped (so :func:`parse_dynamics` accepts it back unchanged), ``inf`` as "inf"."""
        if self.scheme == "prompts":
            return {key: value for key, value in asdict(self).items() if key in PROMPTS_DYNAMICS_KEYS}
        unused = {"scheme"} if self.scheme == "landscape" else set()
        if self.engine == "fast":
            unused |= {"engine"}
        if self.preconditioner == DynamicsConfig.preconditioner:
            unused |= {"preconditioner"}
        if not self.adaptive:
            unused |= {"rtol", "atol"}
        if self.integrator != "rosenbrock23":
            unused |= {"krylov_rtol", "krylov_maxiter", "preconditioner"}
        table = {key: value for key, value in asdict(self).items() if value is not None and key not in unused}
        if math.isinf(self.timescale_ratio):
            table["timescale_ratio"] = "inf"
        return table


def init_table(config: InitConfig) -> dict[str, Any]:
    """The resolved ``[init]`` table, TOML-ready, with only the keys its kind uses (so
    :func:`parse_init` accepts it back unchanged)."""
    used = {
        "gaussian": {"particles", "scale", "seed"},
        "region": {"particles", "scale", "radius", "seed"},
        "file": {"measure"},
        "saddle": {"measure", "saddle_tol"},
    }[config.kind] | {"kind"}
    return {key: value for key, value in asdict(config).items() if value is not None and key in used}


# ----------------------------------------------------------------------- parsing
def parse_init(raw: dict[str, Any] | None, base: Path = Path(".")) -> InitConfig:
    """Validate an ``[init]`` table; relative measure paths resolve from ``base``.

    Raises:
        ValueError: an unknown key, a wrong type or value (naming ``[init] key``), or a
            missing measure file for ``kind = "file"`` / ``"saddle"``.
    """
    values = table(raw, "init")
    known(values, "init", sorted(InitConfig.__dataclass_fields__))
    kind = choice(values, "init", "kind", INIT_KINDS, "gaussian")
    measure = values.get("measure")
    if kind in ("file", "saddle"):
        if not isinstance(measure, str):
            raise ValueError(f"[init] kind = \"{kind}\" needs measure = \"path/to/measure.npz\" (a string).")
        measure = str(resolve_path(base / measure, "[init] measure"))
        for key in ("particles", "scale", "radius", "seed"):
            if key in values:
                raise ValueError(f"[init] {key} is not used with kind = \"{kind}\" (the measure file fixes the particles).")
    elif measure is not None:
        raise ValueError(f"[init] measure is only used with kind = \"file\" or \"saddle\", got kind = \"{kind}\".")
    if kind != "region" and "radius" in values:
        raise ValueError(f"[init] radius is only used with kind = \"region\", got kind = \"{kind}\".")
    if kind != "saddle" and "saddle_tol" in values:
        raise ValueError(f"[init] saddle_tol is only used with kind = \"saddle\", got kind = \"{kind}\".")
    return InitConfig(
        kind=kind,
        particles=integer(values, "init", "particles", InitConfig.particles, 1),
        scale=number(values, "init", "scale", InitConfig.scale, positive=True),
        radius=number(values, "init", "radius", InitConfig.radius, positive=True),
        seed=integer(values, "init", "seed", InitConfig.seed, 0),
        measure=measure,
        saddle_tol=number(values, "init", "saddle_tol", InitConfig.saddle_tol, positive=True),
    )


def parse_dynamics(raw: dict[str, Any] | None) -> DynamicsConfig:
    """Validate a ``[dynamics]`` table with its ``birth_death`` and ``perturbation`` sub-tables.

    Raises:
        ValueError: an unknown key, a wrong type or value (naming ``[dynamics…] key``), or
            both ``steps`` and ``time``.
    """
    values = table(raw, "dynamics")
    scalar_keys = {f for f in DynamicsConfig.__dataclass_fields__} - {"birth_death", "perturbation"}
    known(values, "dynamics", sorted(scalar_keys | {"birth_death", "perturbation"}))
    scheme = choice(values, "dynamics", "scheme", SCHEMES, DynamicsConfig.scheme)
    if scheme == "prompts":
        for key in values:
            if key not in PROMPTS_DYNAMICS_KEYS:
                raise ValueError(f"[dynamics] {key} is not used with scheme = \"prompts\" (the run is set by [prompts]).")
    if "steps" in values and "time" in values:
        raise ValueError("[dynamics] give either steps or time, not both.")
    integrator = choice(values, "dynamics", "integrator", INTEGRATORS, DynamicsConfig.integrator)
    if "time" in values:
        steps, time = None, number(values, "dynamics", "time", None, positive=True)
    else:
        steps, time = integer(values, "dynamics", "steps", DynamicsConfig.steps, 1), None
    for key in ("rtol", "atol"):
        if key in values and integrator not in ADAPTIVE_INTEGRATORS:
            raise ValueError(f"[dynamics] {key} is only used with an adaptive integrator (rk23, dopri5, rosenbrock23), got {integrator!r}.")
    for key in ("krylov_rtol", "krylov_maxiter", "preconditioner"):
        if key in values and integrator != "rosenbrock23":
            raise ValueError(f"[dynamics] {key} is only used with integrator = \"rosenbrock23\", got {integrator!r}.")
    krylov_rtol = number(values, "dynamics", "krylov_rtol", None, positive=True)
    if krylov_rtol is not None and krylov_rtol >= 1.0:
        raise ValueError(f"[dynamics] krylov_rtol must be < 1 (a relative residual; ≥ 1 accepts x = 0 and the run stands still), got {krylov_rtol!r}.")
    eta = values.get("timescale_ratio", "inf")
    if eta != "inf":
        eta = number(values, "dynamics", "timescale_ratio", None, positive=True)
    bd = table(values.get("birth_death"), "dynamics.birth_death")
    known(bd, "dynamics.birth_death", sorted({"kind", "rate"}))
    pt = table(values.get("perturbation"), "dynamics.perturbation")
    known(pt, "dynamics.perturbation", sorted({"kind", "g_thr", "t_thr", "radius"}))
    return DynamicsConfig(
        steps=steps,
        time=time,
        step_size=number(values, "dynamics", "step_size", DynamicsConfig.step_size, positive=True),
        integrator=integrator,
        rtol=number(values, "dynamics", "rtol", DynamicsConfig.rtol, positive=True),
        atol=number(values, "dynamics", "atol", DynamicsConfig.atol, positive=True),
        krylov_rtol=krylov_rtol,
        krylov_maxiter=integer(values, "dynamics", "krylov_maxiter", DynamicsConfig.krylov_maxiter, 1),
        preconditioner=choice(values, "dynamics", "preconditioner", PRECONDITIONERS, DynamicsConfig.preconditioner),
        timescale_ratio=math.inf if eta == "inf" else eta,
        record_every=integer(values, "dynamics", "record_every", DynamicsConfig.record_every, 1),
        snapshot_every=integer(values, "dynamics", "snapshot_every", DynamicsConfig.snapshot_every, 0),
        checkpoint_every=integer(values, "dynamics", "checkpoint_every", DynamicsConfig.checkpoint_every, 1),
        checkpoint_seconds=number(values, "dynamics", "checkpoint_seconds", DynamicsConfig.checkpoint_seconds, minimum=0.0),
        seed=integer(values, "dynamics", "seed", DynamicsConfig.seed, 0),
        birth_death=BirthDeathConfig(
            kind=choice(bd, "dynamics.birth_death", "kind", BIRTH_DEATH_KINDS, "none"),
            rate=number(bd, "dynamics.birth_death", "rate", BirthDeathConfig.rate, positive=True),
        ),
        perturbation=PerturbationConfig(
            kind=choice(pt, "dynamics.perturbation", "kind", PERTURBATION_KINDS, "none"),
            g_thr=number(pt, "dynamics.perturbation", "g_thr", PerturbationConfig.g_thr, positive=True),
            t_thr=number(pt, "dynamics.perturbation", "t_thr", PerturbationConfig.t_thr, minimum=0.0),
            radius=number(pt, "dynamics.perturbation", "radius", PerturbationConfig.radius, positive=True),
        ),
        scheme=scheme,
        engine=choice(values, "dynamics", "engine", ENGINES, DynamicsConfig.engine),
    )


@dataclass(frozen=True)
class PromptsConfig:
    """SGD of the real model on sampled prompts (``[dynamics] scheme = "prompts"``, :mod:`.prompts`).

    Attributes:
        length: the prompt length ``N`` (pairs before the query).
        batch: prompts per step (≥ 2, for the standard error of the prompt loss).
        steps: number of SGD steps, or None when ``time`` is given.
        time: final time ``T`` (``ceil(T / learning_rate)`` steps), or None.
        learning_rate: the step ``δt``: particle ``i`` moves by ``δt/p_i`` times its gradient
            (``δt·M``, the mean-field scaling), ``W`` by ``δt·attention_rate``.
        attention_rate: the timescale ratio between ``W`` and the MLP (0: ``W`` frozen;
            ``math.inf``, ``"inf"`` in the file: the two-timescale limit, ``W`` realises
            ``Γ*(µ)`` of the current neurons after every step).
        train_prompts: the size of a fixed training set drawn once, or None (``"online"``:
            fresh prompts every step).
        seed: seed of the training set and of the run's generator.
        precision: ``float64`` (default) or ``float32`` (with a ``PrecisionWarning``).
        device: ``cpu`` or ``cuda``.
    """

    length: int
    batch: int = 64
    steps: int | None = 1000
    time: float | None = None
    learning_rate: float = 0.01
    attention_rate: float = 1.0
    train_prompts: int | None = None
    seed: int = 0
    precision: str = "float64"
    device: str = "cpu"

    @property
    def total_steps(self) -> int:
        """The number of SGD steps: ``steps``, or ``ceil(time / learning_rate)``."""
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.time / self.learning_rate * (1.0 - 1e-12)))


def parse_prompts(raw: dict[str, Any] | None, problem_length: float = math.inf) -> PromptsConfig:
    """Validate a ``[prompts]`` table; ``problem_length`` is the problem's ``[task] prompt_length``.

    Raises:
        ValueError: an unknown key, a wrong type or value (naming ``[prompts] key``), both
            ``steps`` and ``time``, no ``length`` where the problem's is infinite, a ``length``
            that contradicts a finite ``[task] prompt_length``, or fewer ``train_prompts`` than ``batch``.
    """
    values = table(raw, "prompts")
    known(values, "prompts", sorted(PromptsConfig.__dataclass_fields__))
    if "steps" in values and "time" in values:
        raise ValueError("[prompts] give either steps or time, not both.")
    if "length" in values:
        length = integer(values, "prompts", "length", None, 1)
        if not math.isinf(problem_length) and length != problem_length:
            raise ValueError(f"[prompts] length = {length} contradicts [task] prompt_length = {int(problem_length)}.")
    elif math.isinf(problem_length):
        raise ValueError("[prompts] length is required: [task] prompt_length is inf, and prompts need a finite N.")
    else:
        length = int(problem_length)
    if "time" in values:
        steps, time = None, number(values, "prompts", "time", None, positive=True)
    else:
        steps, time = integer(values, "prompts", "steps", PromptsConfig.steps, 1), None
    batch = integer(values, "prompts", "batch", PromptsConfig.batch, 2)
    train_prompts = values.get("train_prompts", "online")
    if train_prompts == "online":
        train_prompts = None
    else:
        if isinstance(train_prompts, str):
            raise ValueError(f"[prompts] train_prompts must be \"online\" or an integer ≥ batch, got {short(train_prompts)}.")
        train_prompts = integer(values, "prompts", "train_prompts", None, batch)
    attention_rate = values.get("attention_rate", PromptsConfig.attention_rate)
    if attention_rate == "inf" or attention_rate == math.inf:  # the string, or TOML's inf
        attention_rate = math.inf
    elif isinstance(attention_rate, str):
        raise ValueError(f"[prompts] attention_rate must be a number ≥ 0 or \"inf\", got {short(attention_rate)}.")
    else:
        attention_rate = number(values, "prompts", "attention_rate", PromptsConfig.attention_rate, minimum=0.0)
    return PromptsConfig(
        length=length,
        batch=batch,
        steps=steps,
        time=time,
        learning_rate=number(values, "prompts", "learning_rate", PromptsConfig.learning_rate, positive=True),
        attention_rate=attention_rate,
        train_prompts=train_prompts,
        seed=integer(values, "prompts", "seed", PromptsConfig.seed, 0),
        precision=choice(values, "prompts", "precision", PRECISIONS, PromptsConfig.precision),
        device=choice(values, "prompts", "device", DEVICES, PromptsConfig.device),
    )


def prompts_table(config: PromptsConfig) -> dict[str, Any]:
    """The resolved ``[prompts]`` table, TOML-ready (:func:`parse_prompts` accepts it back unchanged)."""
    values = {key: value for key, value in asdict(config).items() if value is not None}
    values["train_prompts"] = "online" if config.train_prompts is None else config.train_prompts
    if math.isinf(config.attention_rate):
        values["attention_rate"] = "inf"
    return values
