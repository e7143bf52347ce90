"""Numerical guards of the core (issue 8): precision warning, singular Σ_µµ, ridge, overflow.

* float32 asked for explicitly warns (:class:`landscape.landscape.PrecisionWarning`) that
  certificates need float64; float64 is silent.
* a near-singular Σ_µµ is refused with λ_min and the condition number in the message.
* the optional ridge ``λ`` (off by default) is the Tikhonov problem
  ``L_λ(µ) = min_Γ L(µ, Γ) + ½λ tr(ΓᵀΓ A_N)``: so ``L ≤ L_λ ≤ L + ½λ tr(Γ*ᵀΓ* A_N)`` and
  ``L_λ`` is nondecreasing in ``λ``; it is reported in the evaluation when used.
* an evaluation that overflows is refused instead of reporting inf or NaN.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from landscape import (
    AttentionLandscape,
    ExactGaussianExpectation,
    ParticleMeasure,
    SingularMomentError,
    Teacher,
    get_activation,
    parse_problem,
)
from landscape.cli import main
from landscape.landscape import PrecisionWarning
from landscape.second_order.settings import tolerance

EXAMPLE_PROBLEM = {
    "teacher": {"activation": "erf", "c": [[1.0, 0.0], [0.0, 1.0]], "u": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]},
    "task": {"noise": 0.1},
}


def _landscape(dtype=torch.float64, **kwargs) -> AttentionLandscape:
    teacher = Teacher(np.eye(2), np.eye(3)[:2], "erf")
    return AttentionLandscape(teacher, ExactGaussianExpectation(teacher, get_activation("erf"), dtype=dtype), **kwargs)


def _random_measure(seed: int = 0) -> ParticleMeasure:
    rng = np.random.default_rng(seed)
    return ParticleMeasure(rng.standard_normal((4, 2)), rng.standard_normal((4, 3)) / math.sqrt(3))


# ---------------------------------------------------------------------- precision
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_landscape_warns(dtype):
    with pytest.warns(PrecisionWarning, match="float64"):
        _landscape(dtype)


def test_problem_spec_float32_warns_and_float64_is_silent():
    spec = parse_problem(EXAMPLE_PROBLEM)
    with pytest.warns(PrecisionWarning, match="certificates"):
        spec.landscape(dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec.landscape()
        spec.landscape(dtype=torch.float64)


# ---------------------------------------------------------------- singular Σ_µµ
def test_singular_sigma_names_lambda_min_and_condition_number():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1, 2)).repeat(3, axis=0)  # every a_i equal: h_µ has rank 1 < k = 2
    measure = ParticleMeasure(a, rng.standard_normal((3, 3)))
    with pytest.raises(SingularMomentError, match=r"λ_min = .*condition number"):
        _landscape().evaluate(measure)


# ------------------------------------------------------------------------ ridge
def test_ridge_is_off_by_default():
    spec = parse_problem(EXAMPLE_PROBLEM)
    assert spec.ridge == 0.0 and spec.landscape().ridge == 0.0
    result = spec.landscape().evaluate(_random_measure()).to_dict()
    assert "ridge" not in result


@pytest.mark.parametrize("prompt_length", [math.inf, 10])
def test_ridge_loss_is_bracketed_and_monotone(prompt_length):
    """``L ≤ L_λ ≤ L + ½λ tr(Γ*ᵀ Γ* A_N)`` (plug Γ* into the penalised objective); ``L_λ`` ↑ in λ."""
    measure = _random_measure(2)
    teacher = Teacher(np.eye(2), np.eye(3)[:2], "erf")
    expectation = ExactGaussianExpectation(teacher, get_activation("erf"), fourth_samples=4000)
    plain = AttentionLandscape(teacher, expectation, noise=0.1, prompt_length=prompt_length)
    a, w, p = measure.tensors()
    sigma_mm, sigma_mt, fourth = plain.moments(a, w, p)
    gamma = plain.gamma_star(a, w, p)
    a_n = plain._attention_covariance(sigma_mm, sigma_mt, fourth)
    penalty = 0.5 * float(torch.trace(gamma.T @ gamma @ a_n))
    base = float(plain.loss(a, w, p))
    _, cond = plain.conditioning(measure)
    tol = tolerance(torch.float64, 1.0, factor=64.0 * cond)
    previous = base
    for ridge in (1e-8, 1e-6, 1e-4, 1e-2, 1.0):
        ridged = AttentionLandscape(teacher, expectation, noise=0.1, prompt_length=prompt_length, ridge=ridge)
        value = float(ridged.loss(a, w, p))
        assert base - tol <= value <= base + ridge * penalty + tol
        assert value >= previous - tol
        previous = value
        # Γ*_λ minimises the penalised objective L(µ, Γ) + ½λ tr(ΓᵀΓA_N), which loss_with_gamma computes
        gamma_r = ridged.gamma_star(a, w, p)
        assert float(ridged.loss_with_gamma(a, w, p, gamma_r)) == pytest.approx(value, abs=tol * (1 + ridge))


def test_ridge_makes_a_singular_measure_evaluable_and_is_reported():
    rng = np.random.default_rng(3)
    measure = ParticleMeasure(rng.standard_normal((1, 2)).repeat(3, axis=0), rng.standard_normal((3, 3)))
    with pytest.raises(SingularMomentError):
        _landscape().evaluate(measure)
    result = _landscape(ridge=1e-3, noise=0.1).evaluate(measure)
    assert result.ridge == 1e-3
    out = result.to_dict()
    assert out["ridge"] == 1e-3 and out["loss_star"] is None  # L* is unknown for the ridge problem
    assert all(math.isfinite(out[key]) for key in ("loss", "loss_inf", "grad_norm", "sigma_cond"))
    assert out["loss"] >= 0.5 * 0.1**2


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_ridge_must_be_finite_and_nonnegative(bad):
    with pytest.raises(ValueError, match="ridge"):
        _landscape(ridge=bad)
    with pytest.raises(ValueError, match="ridge"):
        parse_problem({**EXAMPLE_PROBLEM, "expectation": {"ridge": bad}})


def test_ridge_reaches_the_json_of_the_command(tmp_path, capsys):
    problem = tmp_path / "p.toml"
    problem.write_text(
        '[teacher]\nactivation = "erf"\nc = [[1.0, 0.0], [0.0, 1.0]]\nu = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]\n'
        "[expectation]\nridge = 0.001\n",
        encoding="utf-8",
    )
    _random_measure().save(tmp_path / "m.npz")
    assert main(["evaluate", "--problem", str(problem), "--measure", str(tmp_path / "m.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ridge"] == 0.001


# --------------------------------------------------------------------- overflow
def test_overflowing_evaluation_is_refused():
    """A teacher whose features overflow float64 gives tr Σ_°° = inf: refused, not reported."""
    teacher = Teacher(1e200 * np.eye(2), np.eye(3)[:2], "erf")
    landscape = AttentionLandscape(teacher, ExactGaussianExpectation(teacher, get_activation("erf")))
    with pytest.raises(ValueError, match="overflowed"):
        landscape.evaluate(_random_measure())


# ------------------------------------------------------------ warnings in the CLI
@pytest.mark.parametrize("valid", [True, False])
def test_cli_holds_warnings_back_behind_the_one_error_line(tmp_path, capsys, monkeypatch, valid):
    """A warning met during a run follows a success as ``warning: …``; a failure shows only ``error:``."""
    import landscape.cli.evaluate as cli  # the module whose load_problem evaluate calls

    real = cli.load_problem

    def warning_load_problem(path):
        warnings.warn("something odd", RuntimeWarning, stacklevel=2)
        return real(path)

    monkeypatch.setattr(cli, "load_problem", warning_load_problem)
    problem = tmp_path / "p.toml"
    problem.write_text(
        '[teacher]\nactivation = "erf"\nc = [[1.0, 0.0], [0.0, 1.0]]\nu = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]\n',
        encoding="utf-8",
    )
    if valid:
        _random_measure().save(tmp_path / "m.npz")
    else:
        (tmp_path / "m.npz").write_bytes(b"junk")
    status = main(["evaluate", "--problem", str(problem), "--measure", str(tmp_path / "m.npz"), "--json"])
    err = capsys.readouterr().err.splitlines()
    if valid:
        assert status == 0 and err == ["warning: RuntimeWarning: something odd"]
    else:
        assert status == 2 and len(err) == 1 and err[0].startswith("error: ")
