r"""The ``[init]`` and ``[dynamics]`` tables of a problem file, validated.

Keys and defaults (README, "Dynamics: train")::

    [init]       kind = "gaussian" | "region" | "file" | "saddle";  particles = 100;
                 scale = 1.0;  radius = 0.05;  seed = 0;  measure = "mu.npz";
                 saddle_tol = 1e-8
    [dynamics]   steps = 1000  (or  time = T);  step_size = 0.01;
                 integrator = "euler" | "heun" | "rk4" | "rk23" | "dopri5" | "rosenbrock23";
                 rtol = 1e-6;  atol = 1e-9;  timescale_ratio = "inf" | η;
                 krylov_rtol = rtol / 10;  krylov_maxiter = 200   (rosenbrock23 only)
                 record_every = 1;  snapshot_every = 0;  checkpoint_every = 100;
                 checkpoint_seconds = 60.0  (also checkpoint when that much wall time passed; 0: off);
                 seed = 0
    [dynamics.birth_death]   kind = "none" | "wfr" | "stochastic";  rate = 1.0
    [dynamics.perturbation]  kind = "none" | "isotropic" | "hessian";  g_thr = 1e-3;
                             t_thr = 1.0;  radius = 1e-2

Every unknown key or wrong type is a ``ValueError`` naming the table and the key.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..io.schema import choice, integer, known, number, table

__all__ = [
    "InitConfig",
    "BirthDeathConfig",
    "PerturbationConfig",
    "DynamicsConfig",
    "parse_init",
    "parse_dynamics",
    "INTEGRATORS",
    "ADAPTIVE_INTEGRATORS",
]

INIT_KINDS = ("gaussian", "region", "file", "saddle")
INTEGRATORS = ("euler", "heun", "rk4", "rk23", "dopri5", "rosenbrock23")
ADAPTIVE_INTEGRATORS = ("rk23", "dopri5", "rosenbrock23")
BIRTH_DEATH_KINDS = ("none", "wfr", "stochastic")
PERTURBATION_KINDS = ("none", "isotropic", "hessian")


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
        timescale_ratio: ``η`` (``math.inf``: Γ = Γ*(µ), the landscape flow).
        record_every, snapshot_every, checkpoint_every: periods in steps (0: never).
        checkpoint_seconds: also checkpoint after the first step that ends this many wall-clock
            seconds after the last checkpoint (0: by step count only). A checkpoint only saves
            the state, so neither period changes the numbers of a run.
        seed: seed of the run's random generator (perturbations, stochastic birth–death).
        birth_death, perturbation: the sub-tables.
    """

    steps: int | None = 1000
    time: float | None = None
    step_size: float = 0.01
    integrator: str = "rk4"
    rtol: float = 1e-6
    atol: float = 1e-9
    krylov_rtol: float | None = None
    krylov_maxiter: int = 200
    timescale_ratio: float = math.inf
    record_every: int = 1
    snapshot_every: int = 0
    checkpoint_every: int = 100
    checkpoint_seconds: float = 60.0
    seed: int = 0
    birth_death: BirthDeathConfig = field(default_factory=BirthDeathConfig)
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)

    @property
    def adaptive(self) -> bool:
        return self.integrator in ADAPTIVE_INTEGRATORS

    def to_table(self) -> dict[str, Any]:
        """The resolved table, TOML-ready: ``None`` entries and the keys this integrator does not
        use dropped (so :func:`parse_dynamics` accepts it back unchanged), ``inf`` as "inf"."""
        unused = set()
        if not self.adaptive:
            unused |= {"rtol", "atol"}
        if self.integrator != "rosenbrock23":
            unused |= {"krylov_rtol", "krylov_maxiter"}
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
        measure = str((base / measure).resolve())
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
    for key in ("krylov_rtol", "krylov_maxiter"):
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
    )
