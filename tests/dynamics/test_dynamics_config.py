"""Tests of :mod:`landscape.dynamics.config` and the ``train`` command's handling of bad tables."""

from __future__ import annotations

import math

import pytest
from conftest import ERF_TEACHER_TOML

from landscape.cli import main
from landscape.dynamics.config import DynamicsConfig, InitConfig, init_table, parse_dynamics, parse_init


def test_defaults():
    assert parse_init(None) == InitConfig()
    assert parse_dynamics({}) == DynamicsConfig()
    assert math.isinf(parse_dynamics(None).timescale_ratio)


def test_rosenbrock_tables():
    """``krylov_rtol`` defaults to None (``rtol / 10`` in the solver) and is dropped from the resolved table."""
    dyn = parse_dynamics({"time": 1, "integrator": "rosenbrock23", "rtol": 1e-4, "krylov_maxiter": 50})
    assert dyn.adaptive and dyn.krylov_rtol is None and dyn.krylov_maxiter == 50
    assert "krylov_rtol" not in dyn.to_table()
    assert parse_dynamics({"integrator": "rosenbrock23", "krylov_rtol": 1e-7}).krylov_rtol == 1e-7


@pytest.mark.parametrize(
    "table",
    [
        {},
        {"time": 2, "integrator": "rk23", "rtol": 1e-5},
        {"steps": 7, "integrator": "euler", "timescale_ratio": 4, "birth_death": {"kind": "wfr", "rate": 3}},
        {"time": 1, "integrator": "rosenbrock23", "krylov_rtol": 1e-6, "krylov_maxiter": 40},
        {"time": 1, "integrator": "rosenbrock23", "perturbation": {"kind": "hessian", "radius": 1e-3}},
    ],
)
def test_resolved_dynamics_table_parses_back_unchanged(table):
    """``config.toml`` holds ``to_table()``: it must be a valid ``[dynamics]`` table that resolves to the same run."""
    dyn = parse_dynamics(table)
    assert parse_dynamics(dyn.to_table()) == dyn


@pytest.mark.parametrize(
    "table",
    [{}, {"kind": "region", "radius": 0.1, "particles": 4}, {"kind": "gaussian", "scale": 0.3, "seed": 9}, {"kind": "file", "measure": "mu.npz"}],
)
def test_resolved_init_table_parses_back_unchanged(tmp_path, table):
    (tmp_path / "mu.npz").write_bytes(b"")  # only its path is resolved here
    init = parse_init(table, tmp_path)
    assert parse_init(init_table(init), tmp_path) == init


def test_full_tables():
    dyn = parse_dynamics(
        {
            "time": 3,
            "integrator": "dopri5",
            "rtol": 1e-8,
            "timescale_ratio": 10,
            "birth_death": {"kind": "wfr", "rate": 2},
            "perturbation": {"kind": "hessian", "g_thr": 1e-4, "t_thr": 0, "radius": 1e-3},
        }
    )
    assert (dyn.steps, dyn.time, dyn.adaptive, dyn.timescale_ratio) == (None, 3.0, True, 10.0)
    assert dyn.birth_death.kind == "wfr" and dyn.perturbation.t_thr == 0.0
    assert dyn.to_table()["timescale_ratio"] == 10.0


@pytest.mark.parametrize(
    "table, needle",
    [
        ({"stepz": 3}, "stepz"),
        ({"steps": 2.5}, "steps"),
        ({"steps": True}, "steps"),
        ({"step_size": "big"}, "step_size"),
        ({"step_size": -1.0}, "step_size"),
        ({"integrator": "leapfrog"}, "integrator"),
        ({"timescale_ratio": "fast"}, "timescale_ratio"),
        ({"steps": 3, "time": 1.0}, "steps or time"),
        ({"rtol": 1e-3}, "rtol"),
        ({"integrator": "rk23", "krylov_rtol": 1e-6}, "krylov_rtol"),
        ({"integrator": "rosenbrock23", "krylov_rtol": 0}, "krylov_rtol"),
        ({"integrator": "rosenbrock23", "krylov_rtol": 1.0}, "krylov_rtol must be < 1"),
        ({"integrator": "rosenbrock23", "krylov_maxiter": 0}, "krylov_maxiter"),
        ({"birth_death": {"kind": "wfr", "alpha": 1}}, "alpha"),
        ({"birth_death": {"rate": "x"}}, "rate"),
        ({"birth_death": 3}, "birth_death"),
        ({"perturbation": {"kind": "hessian", "radius": 0}}, "radius"),
        ({"perturbation": {"g_threshold": 1}}, "g_threshold"),
    ],
)
def test_bad_dynamics_names_the_key(table, needle):
    with pytest.raises(ValueError, match=needle):
        parse_dynamics(table)


@pytest.mark.parametrize(
    "table, needle",
    [
        ({"particle": 3}, "particle"),
        ({"particles": 0}, "particles"),
        ({"scale": "1"}, "scale"),
        ({"kind": "uniform"}, "kind"),
        ({"kind": "file"}, "measure"),
        ({"kind": "file", "measure": "m.npz", "particles": 3}, "particles"),
        ({"radius": 0.1}, "radius"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_init_names_the_key(table, needle):
    with pytest.raises(ValueError, match=needle):
        parse_init(table)


@pytest.mark.parametrize(
    "extra, needle",
    [
        ("[dynamics]\nstep_sise = 0.1\n", "step_sise"),
        ("[dynamics]\nsteps = \"many\"\n", "steps"),
        ("[init]\nparticles = 2.5\n", "particles"),
        ("[dynamics.perturbation]\nkind = \"isotropic\"\nradius = \"small\"\n", "radius"),
    ],
)
def test_cli_rejects_bad_toml_with_one_line(tmp_path, capsys, extra, needle):
    """A bad TOML: exit status 2, one ``error:`` line naming the key, nothing written."""
    problem = tmp_path / "p.toml"
    problem.write_text(ERF_TEACHER_TOML + extra)
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err
    assert not (tmp_path / "run").exists()


def test_cli_refuses_to_overwrite_and_to_resume_nothing(tmp_path, capsys):
    problem = tmp_path / "p.toml"
    problem.write_text(ERF_TEACHER_TOML + "[init]\nparticles = 2\n[dynamics]\nsteps = 2\n")
    out = str(tmp_path / "run")
    assert main(["train", "--problem", str(problem), "--out", out, "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert main(["train", "--problem", str(problem), "--out", out]) == 0
    assert main(["train", "--problem", str(problem), "--out", out]) == 2
    assert "already holds a run" in capsys.readouterr().err
    problem.write_text(ERF_TEACHER_TOML + "[init]\nparticles = 2\n[dynamics]\nsteps = 3\n")
    assert main(["train", "--problem", str(problem), "--out", out, "--resume"]) == 2
    assert "does not resolve" in capsys.readouterr().err
