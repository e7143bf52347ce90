"""`landscape analyze`: JSON contract, --out files, [analysis] validation, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ERF_TEACHER_TOML

from landscape.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "landscape" / "examples"
PROBLEM = EXAMPLES / "teacher_student.toml"


def _run(capsys, *args):
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def test_analyze_json_at_the_saddle_writes_psi0_and_the_report(capsys, tmp_path):
    out_dir = tmp_path / "run"
    status, out, err = _run(capsys, "analyze", "--problem", PROBLEM, "--measure", EXAMPLES / "saddle.npz", "--json", "--out", out_dir)
    assert status == 0, err
    report = json.loads(out)
    _, ev_out, _ = _run(capsys, "evaluate", "--problem", PROBLEM, "--measure", EXAMPLES / "saddle.npz", "--json")
    evaluated = json.loads(ev_out)
    assert set(evaluated) <= set(report)
    assert report["loss"] == evaluated["loss"]
    assert report["classification"] == "strict_saddle"
    for key in ("lambda_min", "residual", "null_dim", "zero_count", "converged", "hvp_count"):
        assert key in report["hessian"]
    assert report["hessian"]["null_dim"] == 9 and report["hessian"]["lambda_min"] < -0.5
    assert report["certificate"]["certified"]
    psi = np.load(out_dir / "psi0.npz")
    assert psi["a"].shape == (3, 3) and psi["w"].shape == (3, 6)
    assert json.loads((out_dir / "analysis.json").read_text()) == report
    assert report["measure"] == "measure.npz" and Path(report["problem"]) == PROBLEM
    np.testing.assert_array_equal(np.load(out_dir / "measure.npz")["w"], np.load(EXAMPLES / "saddle.npz")["w"])
    assert max(abs(x) for x in report["hessian"]["null_spectrum"]) < 1e-12


def test_analyze_table_output_and_refine(capsys):
    status, out, _ = _run(capsys, "analyze", "--problem", PROBLEM, "--measure", EXAMPLES / "teacher.npz", "--refine")
    assert status == 0 and "global_minimum" in out and "refinement residual" in out
    assert "refinement converged           yes" in out


def test_text_mode_says_when_refinement_did_not_converge(capsys, tmp_path):
    """One Newton step from a random measure cannot reach refine_tol: the table says so, and why."""
    problem = tmp_path / "p.toml"
    problem.write_text(PROBLEM.read_text() + "\n[analysis]\nrefine_maxiter = 1\n")
    status, out, _ = _run(capsys, "analyze", "--problem", problem, "--measure", EXAMPLES / "random.npz", "--refine")
    assert status == 0
    assert "refinement converged           NO, stopped by maxiter" in out
    _, json_out, _ = _run(capsys, "analyze", "--problem", problem, "--measure", EXAMPLES / "random.npz", "--refine", "--json")
    refinement = json.loads(json_out)["refinement"]
    assert refinement["converged"] is False and refinement["reason"] == "maxiter"


def test_degenerate_prints_a_loud_warning(capsys, tmp_path):
    """One erf neuron for two orthogonal features (k = 1 < k°) is a local minimum; with a stated L* = 0 it is degenerate."""
    problem = tmp_path / "p.toml"
    problem.write_text(
        ERF_TEACHER_TOML + "[model]\nfeatures = 1\n[analysis]\nloss_star = 0.0\n"
    )
    measure = tmp_path / "m.npz"
    np.savez(measure, a=np.ones((1, 1)), w=np.array([[1.5, 0.0, 0.0]]))
    status, out, err = _run(capsys, "analyze", "--problem", problem, "--measure", measure, "--json")
    assert status == 0 and json.loads(out)["classification"] == "degenerate"
    assert "WARNING: DEGENERATE CRITICAL POINT" in err and "!!!!" in err


@pytest.mark.parametrize(
    "extra,message",
    [
        ("[analysis]\nbogus_key = 1\n", "bogus_key"),
        ("[analysis]\ngrad_tol = -1.0\n", "grad_tol"),
        ("[analysis]\nmethod = \"arnoldi\"\n", "method"),
    ],
)
def test_bad_analysis_table_is_one_error_line_and_nothing_written(capsys, tmp_path, extra, message):
    problem = tmp_path / "p.toml"
    problem.write_text(PROBLEM.read_text() + "\n" + extra)
    out_dir = tmp_path / "out"
    status, out, err = _run(capsys, "analyze", "--problem", problem, "--measure", EXAMPLES / "saddle.npz", "--out", out_dir)
    assert status == 2 and out == ""
    assert err.startswith("error:") and message in err and err.count("\n") == 1
    assert not out_dir.exists()


def test_bad_measure_and_bad_out_are_errors(capsys, tmp_path):
    bad = tmp_path / "m.npz"
    np.savez(bad, a=np.eye(3), w=np.eye(3))  # w has 3 columns, the problem needs 6
    status, out, err = _run(capsys, "analyze", "--problem", PROBLEM, "--measure", bad, "--out", tmp_path / "o")
    assert status == 2 and err.startswith("error:") and not (tmp_path / "o").exists()
    clash = tmp_path / "file"
    clash.write_text("x")
    status, _, err = _run(capsys, "analyze", "--problem", PROBLEM, "--measure", EXAMPLES / "saddle.npz", "--out", clash)
    assert status == 2 and "not a folder" in err
    zero = tmp_path / "z.npz"
    saddle = np.load(EXAMPLES / "saddle.npz")
    np.savez(zero, a=np.vstack([saddle["a"], saddle["a"][:1]]), w=np.vstack([saddle["w"], saddle["w"][:1]]), p=np.array([0.25, 0.25, 0.5, 0.0]))
    status, _, err = _run(capsys, "analyze", "--problem", PROBLEM, "--measure", zero)
    assert status == 2 and "positive weights" in err
