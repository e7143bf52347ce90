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


def test_spectrum_adds_the_density_and_the_trace(capsys, tmp_path):
    """``--spectrum``: the SLQ density (a probability measure on [λ_min, λ_max]) and Hutchinson's trace, in --json and
    analysis.json. The §9 saddle's Hessian (n = 27) is diagonal in flat coordinates, so every Rademacher probe weighs
    each eigenvalue by exactly 1/n: the mass below 0 is 1/27 (one negative eigenvalue), the extreme nodes are λ_min and
    λ_max and the trace is the dense one."""
    from landscape.io.problem import load_problem
    from landscape.model.measure import ParticleMeasure
    from landscape.second_order.references import dense_spectrum

    out_dir = tmp_path / "run"
    args = ("analyze", "--problem", PROBLEM, "--measure", EXAMPLES / "saddle.npz", "--spectrum", "--spectrum-probes", 4)
    status, out, err = _run(capsys, *args, "--spectrum-steps", 27, "--json", "--out", out_dir)
    assert status == 0, err
    report = json.loads(out)
    density, trace = report["spectral_density"], report["trace"]
    assert density["probes"] == 4 and density["steps"] == 27 and set(density["error"]) >= {"w1_probe_spread", "w1_steps_halved"}
    nodes, weights = np.array(density["nodes"]), np.array(density["weights"])
    assert nodes.shape == weights.shape and np.all(np.diff(nodes) >= 0) and weights.sum() == pytest.approx(1.0)
    lam, _ = dense_spectrum(load_problem(PROBLEM).landscape(), ParticleMeasure.load(EXAMPLES / "saddle.npz"))
    assert nodes[0] == pytest.approx(lam[0], abs=1e-10) and nodes[-1] == pytest.approx(lam[-1], abs=1e-10)
    assert weights[nodes < -1e-6].sum() == pytest.approx(1 / 27, abs=1e-10)
    assert trace["probes"] == 4 and trace["value"] == pytest.approx(lam.sum(), abs=4 * trace["stderr"] + 1e-10)
    assert json.loads((out_dir / "analysis.json").read_text())["spectral_density"] == density
    status, _, err = _run(capsys, "report", out_dir, "--out", tmp_path / "report")
    assert status == 0, err
    figures = {f.stem for f in (tmp_path / "report" / "figures").glob("*.png")}
    assert {"analysis-spectrum", "analysis-density"} <= figures  # the density beside the extreme eigenvalues
    status, text, _ = _run(capsys, *args, "--spectrum-steps", 6)
    assert status == 0 and "4 probes × 6 steps" in text and "trace (Hutchinson)" in text
    _, plain, _ = _run(capsys, "analyze", "--problem", PROBLEM, "--measure", EXAMPLES / "saddle.npz", "--json")
    assert "spectral_density" not in json.loads(plain) and "trace" not in json.loads(plain)


def test_spectrum_with_hutchpp_records_the_method_and_its_products(capsys, tmp_path):
    """``--trace-method hutch++``: the trace of the §9 saddle's Hessian (n = 27) by Hutch++ from 30 products (a sketch
    of 10), within 4 of its standard errors of the dense trace; the JSON says which method and how many products, the
    SLQ spends them beside its own; the default stays Hutchinson on the SLQ probes (no extra product)."""
    from landscape.io.problem import load_problem
    from landscape.model.measure import ParticleMeasure
    from landscape.second_order.references import dense_spectrum

    args = ("analyze", "--problem", PROBLEM, "--measure", EXAMPLES / "saddle.npz", "--spectrum", "--spectrum-probes", 30,
            "--spectrum-steps", 3)
    status, out, err = _run(capsys, *args, "--trace-method", "hutch++", "--json")
    assert status == 0, err
    report = json.loads(out)
    trace = report["trace"]
    assert (trace["method"], trace["products"], trace["sketch"], trace["probes"]) == ("hutch++", 30, 10, 10)
    assert report["spectral_density"]["hvp_count"] == 30 * 3 + 30
    lam, _ = dense_spectrum(load_problem(PROBLEM).landscape(), ParticleMeasure.load(EXAMPLES / "saddle.npz"))
    assert trace["stderr"] > 0 and trace["value"] == pytest.approx(lam.sum(), abs=4 * trace["stderr"])
    status, out, _ = _run(capsys, *args, "--json")
    default = json.loads(out)
    assert (default["trace"]["method"], default["trace"]["sketch"]) == ("hutchinson", 0)
    assert default["spectral_density"]["hvp_count"] == 30 * 3
    status, text, _ = _run(capsys, *args, "--trace-method", "hutch++")
    assert status == 0 and "trace (Hutch++)" in text and "30 products" in text


def test_hutchpp_with_too_few_probes_is_an_error(capsys, tmp_path):
    status, out, err = _run(capsys, "analyze", "--problem", PROBLEM, "--measure", EXAMPLES / "saddle.npz", "--spectrum",
                            "--spectrum-probes", 2, "--trace-method", "hutch++", "--out", tmp_path / "o")
    assert status == 2 and out == "" and err.startswith("error:") and "--trace-method hutch++" in err
    assert not (tmp_path / "o").exists()


def test_spectrum_with_no_probes_is_an_error(capsys, tmp_path):
    status, out, err = _run(capsys, "analyze", "--problem", PROBLEM, "--measure", EXAMPLES / "saddle.npz", "--spectrum",
                            "--spectrum-probes", 0, "--out", tmp_path / "o")
    assert status == 2 and out == "" and err.startswith("error:") and "--spectrum-probes" in err
    assert not (tmp_path / "o").exists()
