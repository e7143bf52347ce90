"""`landscape evaluate`: the JSON contract and one-line errors with exit status 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from landscape.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "landscape" / "examples"
PROBLEM = str(EXAMPLES / "teacher_student.toml")


def _run(capsys, *args):
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_evaluate_json_contract_at_the_saddle(capsys):
    status, out, err = _run(capsys, "evaluate", "--problem", PROBLEM, "--measure", str(EXAMPLES / "saddle.npz"), "--json")
    assert status == 0 and err == ""
    result = json.loads(out)
    for key in ("loss", "loss_star", "grad_norm", "sigma_min", "sigma_cond", "gamma"):
        assert key in result
    assert result["loss"] == pytest.approx(0.310017770958, rel=1e-11)
    assert result["loss_star"] == pytest.approx(0.005)
    assert result["grad_norm"] < 1e-14
    assert np.array(result["gamma"]).shape == (3, 3)
    assert "first_variation" not in result


def test_evaluate_with_probes_reports_one_value_per_probe(capsys):
    status, out, _ = _run(
        capsys, "evaluate", "--problem", PROBLEM, "--measure", str(EXAMPLES / "random.npz"),
        "--probes", str(EXAMPLES / "probes.npz"), "--json",
    )
    assert status == 0
    assert len(json.loads(out)["first_variation"]) == 2


def test_evaluate_prints_a_table_without_json(capsys):
    status, out, _ = _run(capsys, "evaluate", "--problem", PROBLEM, "--measure", str(EXAMPLES / "teacher.npz"))
    assert status == 0 and "grad_norm" in out and "gamma" in out


def _write(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    "make_measure,message",
    [
        (lambda t: str(t / "absent.npz"), "does not exist"),
        (lambda t: _write(t, "nan.npz", a=np.full((3, 3), np.nan), w=np.ones((3, 6))), "NaN"),
        (lambda t: _write(t, "shape.npz", a=np.eye(3), w=np.ones((3, 5))), "columns"),
        (lambda t: _write(t, "neg.npz", a=np.eye(3), w=np.eye(6)[:3], p=np.array([2.0, -0.5, -0.5])), "nonnegative"),
        (lambda t: _write(t, "pickle.npz", a=np.array([{}], dtype=object), w=np.ones((1, 6))), "pickle"),
        (lambda t: _write(t, "singular.npz", a=np.ones((3, 3)), w=np.eye(6)[:3]), "singular: λ_min"),
    ],
)
def test_bad_measures_exit_2_with_one_error_line(make_measure, message, tmp_path, capsys):
    status, out, err = _run(capsys, "evaluate", "--problem", PROBLEM, "--measure", make_measure(tmp_path), "--json")
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error:") and message in err


def test_bad_probes_and_arguments_exit_2(tmp_path, capsys):
    probes = _write(tmp_path, "probes.npz", a=np.ones((2, 3)), w=np.ones((3, 6)))
    status, _, err = _run(capsys, "evaluate", "--problem", PROBLEM, "--measure", str(EXAMPLES / "saddle.npz"), "--probes", probes)
    assert status == 2 and err.startswith("error:") and "probes" in err
    status, _, err = _run(capsys, "evaluate", "--problem", PROBLEM)
    assert status == 2 and err.startswith("error:") and "--measure" in err
    status, _, err = _run(capsys, "frobnicate")
    assert status == 2 and err.startswith("error:")


def test_console_script_prints_one_line_and_no_traceback(tmp_path):
    exe = shutil.which("landscape") or str(Path(sys.executable).parent / "landscape")
    (tmp_path / "p.toml").write_text("[teacher]\nc = [[1.0]]\nu = [[1.0]]\nbogus = 1\n")
    proc = subprocess.run(
        [exe, "evaluate", "--problem", str(tmp_path / "p.toml"), "--measure", str(EXAMPLES / "saddle.npz")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["error: unknown key(s) in [teacher]: bogus (known: activation, c, file, u)."]


def test_an_interrupt_exits_130_with_one_line_and_no_partial_output(tmp_path, capsys, monkeypatch):
    """Ctrl-C during analyze's writes: exit 130, the one line ``error: interrupted``, and no analysis.json
    (written last: a folder without it is no analyze output); the files that were written are whole."""
    from landscape.model.measure import ParticleMeasure

    def interrupted(self, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(ParticleMeasure, "save", interrupted)
    out = tmp_path / "out"
    status, stdout, err = _run(capsys, "analyze", "--problem", PROBLEM, "--measure", str(EXAMPLES / "saddle.npz"), "--out", str(out))
    assert status == 130 and stdout == "" and err == "error: interrupted\n"
    assert not (out / "analysis.json").exists() and not list(out.glob("*.tmp"))
