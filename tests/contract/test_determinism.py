"""Determinism (issue 8): the same seed gives bitwise-identical results on the same machine.

``train`` (final.npz, trajectory.csv, checkpoint.npz, snapshots, config.toml), ``analyze``
(analysis.json, psi0.npz, measure.npz; it has no timing field) and ``verify`` (results.json
with only its ``seconds`` fields removed, and the evidence files) are each run twice into
fresh folders and compared byte for byte. The training problem uses every random source
of a run: the initial draw, isotropic kicks and stochastic birth–death.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from conftest import ERF_TEACHER_TOML

from landscape.cli import main

PROBLEM = ERF_TEACHER_TOML + """[init]
particles = 8
seed = 3
[dynamics]
steps = 40
step_size = 0.02
integrator = "rk4"
checkpoint_every = 5
snapshot_every = 10
seed = 7
[dynamics.birth_death]
kind = "stochastic"
rate = 5.0
[dynamics.perturbation]
kind = "isotropic"
g_thr = 0.5
t_thr = 0.1
radius = 0.01
"""


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_twice_is_bitwise_identical(tmp_path, capsys):
    problem = tmp_path / "p.toml"
    problem.write_text(PROBLEM, encoding="utf-8")
    for name in ("a", "b"):
        assert main(["train", "--problem", str(problem), "--out", str(tmp_path / name)]) == 0
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys() and {"final.npz", "trajectory.csv", "checkpoint.npz"} <= a.keys()
    assert any(k.startswith("snapshots") for k in a)
    events = (tmp_path / "a" / "trajectory.csv").read_text()
    assert "kick:isotropic" in events  # the seeded random sources were used
    for name in a:
        if name != "status.json":
            assert a[name] == b[name], name
    sa, sb = (json.loads((tmp_path / n / "status.json").read_text()) for n in ("a", "b"))
    assert sa == sb


def test_a_different_seed_changes_the_run(tmp_path):
    """The comparison above is not vacuous: another dynamics seed gives another final measure."""
    for name, seed in (("a", 7), ("b", 8)):
        problem = tmp_path / f"{name}.toml"
        problem.write_text(PROBLEM.replace("seed = 7", f"seed = {seed}"), encoding="utf-8")
        assert main(["train", "--problem", str(problem), "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "a" / "final.npz").read_bytes() != (tmp_path / "b" / "final.npz").read_bytes()


def test_analyze_twice_is_bitwise_identical(tmp_path, capsys):
    problem = tmp_path / "p.toml"
    problem.write_text(ERF_TEACHER_TOML + '[analysis]\nmethod = "lobpcg"\n', encoding="utf-8")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mu.npz", a=rng.standard_normal((4, 2)), w=0.7 * rng.standard_normal((4, 3)))
    outputs = []
    for name in ("a", "b"):
        argv = [
            "analyze",
            "--problem",
            str(problem),
            "--measure",
            str(tmp_path / "mu.npz"),
            "--out",
            str(tmp_path / name),
            "--refine",
            "--json",
        ]
        assert main(argv) == 0
        outputs.append(capsys.readouterr().out)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys() == {"analysis.json", "psi0.npz", "measure.npz", ".landscape-analyze"}
    assert a == b
    assert outputs[0] == outputs[1]
    assert "seconds" not in a["analysis.json"].decode()  # no timing field to mask


def _without_seconds(obj):
    if isinstance(obj, dict):
        return {k: _without_seconds(v) for k, v in obj.items() if k not in ("seconds", "provenance")}  # times, date, --out
    if isinstance(obj, list):
        return [_without_seconds(v) for v in obj]
    return obj


def test_verify_twice_is_identical_but_for_seconds(tmp_path, capsys):
    """The quick profile of one cheap real claim (ill-conditioning, about 2 s)."""
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        argv = ["verify", "--profile", "quick", "--claims", "ill-conditioning", "--out", str(out), "--no-baseline", "--no-report"]
        assert main(argv) == 0
        runs.append(out)
    ra, rb = (json.loads((out / "results.json").read_text()) for out in runs)
    assert _without_seconds(ra) == _without_seconds(rb)
    a, b = _files(runs[0]), _files(runs[1])  # evidence may name its own folder: masked
    a = {k: v.replace(str(runs[0]).encode(), b"OUT") for k, v in a.items()}
    b = {k: v.replace(str(runs[1]).encode(), b"OUT") for k, v in b.items()}
    assert a.keys() == b.keys() and len(a) > 1
    for name in a:
        if name.endswith("checkpoint.npz"):  # it records the hash of its config.toml, which names the folder
            ca, cb = (dict(np.load(io.BytesIO(x[name]))) for x in (a, b))
            assert not np.array_equal(ca.pop("config_sha256"), cb.pop("config_sha256"))
            ca.pop("sha256"), cb.pop("sha256")  # the checkpoint's own checksum covers that hash
            assert ca.keys() == cb.keys() and all(np.array_equal(ca[k], cb[k]) for k in ca), name
        elif name != "results.json" and not name.endswith((".png", ".pdf", ".svg")):
            assert a[name] == b[name], name
