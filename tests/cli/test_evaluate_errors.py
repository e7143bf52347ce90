"""`landscape evaluate`: an error estimate beside every number; warnings and refusals naming the setting (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from landscape.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "landscape" / "examples"
PARTS = {"truncation", "quadrature_step", "sampling", "total"}


def _run(capsys, *args):
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def _problem(tmp_path: Path, activation: str, expectation: str = "", task: str = "") -> str:
    path = tmp_path / "p.toml"
    path.write_text(
        f'[teacher]\nactivation = "{activation}"\nc = [[1.0, 0.0], [0.0, 1.0]]\nu = [[1.0, 0.0], [0.0, 1.0]]\n'
        f"[model]\nfeatures = 2\n[task]\nnoise = 0.1\n{task}\n[expectation]\n{expectation}\n"
    )
    return str(path)


def _measure(tmp_path: Path, radius: float) -> str:
    path = tmp_path / "mu.npz"
    np.savez(path, a=np.array([[1.0, 0.2], [-0.3, 0.8]]), w=np.array([[0.6 * radius, 0.8 * radius], [0.5, -0.3]]))
    return str(path)


@pytest.mark.parametrize(
    "problem",
    [
        str(EXAMPLES / "teacher_student.toml"),  # closed forms
        "sigmoid",  # Mehler series
        "monte_carlo",  # sampled backend
        "finite",  # exact backend, Q_µ sampled
    ],
)
def test_every_json_number_has_its_error_estimate(capsys, tmp_path, problem):
    if problem == "sigmoid":
        problem = _problem(tmp_path, "sigmoid", "hermite_order = 256")
    elif problem == "monte_carlo":
        problem = _problem(tmp_path, "erf", 'method = "monte_carlo"\nsamples = 20000')
    elif problem == "finite":
        problem = _problem(tmp_path, "erf", "fourth_moment_samples = 20000", "prompt_length = 10")
    measure = str(EXAMPLES / "random.npz") if "teacher_student" in problem else _measure(tmp_path, 1.0)
    probes = EXAMPLES / "probes.npz" if "teacher_student" in problem else tmp_path / "mu.npz"
    status, out, _ = _run(capsys, "evaluate", "--problem", problem, "--measure", measure, "--probes", str(probes), "--json")
    assert status == 0
    result = json.loads(out)
    numbers = {"loss", "loss_inf", "grad_norm", "sigma_min", "sigma_cond", "gamma", "first_variation"}
    assert set(result["errors"]) == numbers
    for parts in result["errors"].values():
        assert set(parts) == PARTS
        assert parts["total"] == pytest.approx(parts["truncation"] + parts["quadrature_step"] + parts["sampling"])
    text = Path(problem).read_text()
    sampled = "prompt_length = 10" in text or 'method = "monte_carlo"' in text
    assert (result["errors"]["loss"]["sampling"] > 0) == sampled


def test_text_output_shows_the_estimates(capsys):
    status, out, _ = _run(
        capsys, "evaluate", "--problem", str(EXAMPLES / "teacher_student.toml"), "--measure", str(EXAMPLES / "random.npz")
    )
    assert status == 0
    assert "± 0.0e+00 (truncation 0.0e+00, step 0.0e+00, sampling 0.0e+00)" in out.splitlines()[0]


def test_sigmoid_beyond_the_documented_weights_warns_naming_the_order(capsys, tmp_path):
    problem = _problem(tmp_path, "sigmoid", "hermite_order = 128")  # the old default order
    status, out, err = _run(capsys, "evaluate", "--problem", problem, "--measure", _measure(tmp_path, 10.0), "--json")
    assert status == 0
    loss = json.loads(out)["errors"]["loss"]
    assert loss["truncation"] > 1e-6
    assert any(line.startswith("warning: loss error estimate") and "raise hermite_order" in line for line in err.splitlines())


def test_auto_order_is_recorded_and_warns_where_no_order_of_its_ladder_suffices(capsys, tmp_path):
    """hermite_order = "auto" (default): sigmoid at |w| = 1 gets a small order, quietly; at |w| = 10 the largest
    order of the ladder, a warning naming hermite_order, and a loss 100x closer than at the old default."""
    status, out, err = _run(capsys, "evaluate", "--problem", _problem(tmp_path, "sigmoid"), "--measure", _measure(tmp_path, 1.0), "--json")
    choice = json.loads(out)["expectation"]
    assert status == 0 and err == "" and choice["hermite_order_auto"]["met"] and choice["hermite_order"] <= 128
    status, out, err = _run(capsys, "evaluate", "--problem", _problem(tmp_path, "sigmoid"), "--measure", _measure(tmp_path, 10.0), "--json")
    result = json.loads(out)
    assert status == 0 and result["expectation"]["hermite_order"] == 512 and not result["expectation"]["hermite_order_auto"]["met"]
    assert any(line.startswith('warning: hermite_order = "auto"') for line in err.splitlines())
    assert result["errors"]["loss"]["truncation"] < 1e-6


def test_tanh_at_30_is_refused_naming_the_order(capsys, tmp_path):
    problem = _problem(tmp_path, "tanh", "hermite_order = 128")
    status, out, err = _run(capsys, "evaluate", "--problem", problem, "--measure", _measure(tmp_path, 30.0), "--json")
    assert status == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: loss error estimate") and "raise hermite_order" in lines[0]


def test_tanh_at_3_warns_and_a_higher_order_is_quiet(capsys, tmp_path):
    measure = _measure(tmp_path, 3.0)
    status, _, err = _run(capsys, "evaluate", "--problem", _problem(tmp_path, "tanh", "hermite_order = 128"), "--measure", measure)
    assert status == 0 and "raise hermite_order" in err
    status, _, err = _run(capsys, "evaluate", "--problem", _problem(tmp_path, "tanh", "hermite_order = 1024"), "--measure", measure)
    assert status == 0 and err == ""


def test_relu_with_bias_warns_naming_the_step(capsys, tmp_path):
    problem = tmp_path / "relu.toml"
    problem.write_text(
        '[teacher]\nactivation = "relu"\nc = [[1.0, 0.0], [0.0, 1.0]]\nu = [[1.0, 0.0], [0.0, 1.0]]\n'
        "[model]\nfeatures = 2\nbias = true\n[task]\nnoise = 0.1\n"
    )
    np.savez(tmp_path / "mu.npz", a=np.array([[1.0, 0.2], [-0.3, 0.8]]), w=np.array([[0.6, 0.8, 0.3], [0.5, -0.3, -0.2]]))
    status, _, err = _run(capsys, "evaluate", "--problem", str(problem), "--measure", str(tmp_path / "mu.npz"))
    assert status == 0
    assert any(line.startswith("warning: loss error estimate") and "lower hermite_step" in line for line in err.splitlines())


def test_hermite_step_five_is_refused_naming_the_step(capsys, tmp_path):
    status, out, err = _run(
        capsys, "evaluate", "--problem", _problem(tmp_path, "tanh", "hermite_step = 5.0"), "--measure", _measure(tmp_path, 1.0)
    )
    assert status == 2 and out == ""
    assert err.startswith("error: [expectation] hermite_step must be ≤") and err.count("\n") == 1
