"""Security (issue 8): no unpickling, no code execution on user data, escaped HTML.

* An AST scan of every module the tool ships (``landscape``, ``verification``, ``reports``,
  ``benchmarks``): no ``pickle``/``dill``/``shelve``/``marshal`` import, no ``eval``,
  ``exec``, ``compile`` or ``__import__`` call, no ``allow_pickle=True``, every ``np.load``
  says ``allow_pickle=False``, every ``torch.load`` says ``weights_only=True``, no
  ``yaml.load``, no ``shell=True``. (joblib/Dask pickle between our own processes; that is
  not user data and not in our code.)
* Configuration is data: a problem file whose strings look like code is refused or read
  as plain strings, never evaluated.
* HTML reports escape every text that comes from a file or a path: a run directory and a
  problem file named like markup (the verify report's claim texts are covered in
  ``test_reports.py``).
"""

from __future__ import annotations

import ast
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ERF_TEACHER_TOML

from landscape.cli import main

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("landscape", "verification", "reports", "benchmarks")
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "shelve", "marshal", "cloudpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
EVIL = "<img src=x onerror=alert(1)>"


def _sources() -> list[Path]:
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 30  # the scan does see the code base
    return files


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} imports {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(f"{where} imports from {node.module}")
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            if name in FORBIDDEN_CALLS:
                found.append(f"{where} calls {name}")
            if _keyword(node, "allow_pickle") is True:
                found.append(f"{where} passes allow_pickle=True")
            if name in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") is not False:
                found.append(f"{where} calls {name} without allow_pickle=False")
            if name == "torch.load" and _keyword(node, "weights_only") is not True:
                found.append(f"{where} calls torch.load without weights_only=True")
            if name in ("yaml.load", "yaml.unsafe_load"):
                found.append(f"{where} calls {name}")
            if _keyword(node, "shell") is True:
                found.append(f"{where} passes shell=True")
    return found


def test_no_pickle_eval_or_exec_in_the_code():
    violations = [v for path in _sources() for v in _violations(path)]
    assert violations == []


@pytest.mark.parametrize(
    "snippet, message",
    [
        ("x = pickle.loads(b'')\n", "calls"),  # not flagged by name alone, but by the import below
        ("import pickle\n", "imports pickle"),
        ("from pickle import loads\n", "imports from pickle"),
        ("eval('1')\n", "calls eval"),
        ("exec('1')\n", "calls exec"),
        ("np.load('f', allow_pickle=True)\n", "allow_pickle=True"),
        ("np.load('f')\n", "without allow_pickle=False"),
        ("torch.load('f')\n", "without weights_only=True"),
        ("subprocess.run('ls', shell=True)\n", "shell=True"),
    ],
)
def test_the_scan_catches_what_it_looks_for(tmp_path, snippet, message):
    """The scanner itself is tested on snippets that must (or, for the first, need not) be flagged."""
    path = tmp_path / "probe.py"
    path.write_text(snippet, encoding="utf-8")
    found = _violations(path)
    if snippet.startswith("x = pickle"):
        assert found == []  # a bare attribute call is caught through its import
    else:
        assert any(message in v for v in found), found


@pytest.mark.parametrize("payload", ["__import__('os').system('touch PWNED')", "${{ 7*7 }}", "!!python/object:os.system"])
def test_problem_strings_are_data_not_code(tmp_path, capsys, payload):
    """Strings in a problem file are compared with known names, never evaluated."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mu.npz", a=rng.standard_normal((3, 2)), w=rng.standard_normal((3, 3)))
    problem = tmp_path / "p.toml"
    problem.write_text(
        "[teacher]\n" + f"activation = {json.dumps(payload)}\n" + "c = [[1.0, 0.0], [0.0, 1.0]]\nu = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]\n",
        encoding="utf-8",
    )
    status = main(["evaluate", "--problem", str(problem), "--measure", str(tmp_path / "mu.npz"), "--json"])
    assert status == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()




def test_run_report_escapes_paths_and_problem_text(tmp_path, capsys):
    """A run directory and a problem file named like markup: the page shows them as text."""
    folder = tmp_path / EVIL
    folder.mkdir()
    problem = folder / f"{EVIL}.toml"
    problem.write_text(ERF_TEACHER_TOML + "[init]\nparticles = 3\n[dynamics]\nsteps = 5\n", encoding="utf-8")
    run = folder / "run"
    assert main(["train", "--problem", str(problem), "--out", str(run)]) == 0
    assert main(["report", str(run), "--out", str(folder / "report")]) == 0
    html = (folder / "report" / "index.html").read_text(encoding="utf-8")
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_analysis_report_escapes_the_problem_path(tmp_path, capsys):
    folder = tmp_path / EVIL
    folder.mkdir()
    problem = folder / f"{EVIL}.toml"
    problem.write_text(ERF_TEACHER_TOML, encoding="utf-8")
    rng = np.random.default_rng(1)
    np.savez(folder / "mu.npz", a=rng.standard_normal((3, 2)), w=0.7 * rng.standard_normal((3, 3)))
    out = folder / "analysis"
    assert main(["analyze", "--problem", str(problem), "--measure", str(folder / "mu.npz"), "--out", str(out)]) == 0
    assert main(["report", str(out), "--out", str(folder / "report"), "--problem", str(problem)]) == 0
    html = (folder / "report" / "index.html").read_text(encoding="utf-8")
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


# ------------------------------------------------------------------ zip bombs
def _bomb(path: Path, declared: tuple[int, ...], real_bytes: int) -> None:
    """A deflated ``a.npy`` whose header declares ``declared`` float64s, followed by ``real_bytes`` zeros."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": declared})
    member.write(bytes(real_bytes))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.npy", member.getvalue())
        archive.writestr("w.npy", _npy(np.ones((2, 3))))


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_npz_member_declaring_a_huge_array_is_refused_unread(tmp_path, capsys):
    """A 64 GiB declared array that deflates from a few kB: one ``error:`` line naming the limit."""
    _bomb(tmp_path / "bomb.npz", (2**33,), 1 << 20)
    assert (tmp_path / "bomb.npz").stat().st_size < 10_000
    problem = tmp_path / "p.toml"
    problem.write_text(ERF_TEACHER_TOML, encoding="utf-8")
    status = main(["evaluate", "--problem", str(problem), "--measure", str(tmp_path / "bomb.npz"), "--json"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "above the limit" in err and "bomb.npz" in err


def test_array_size_cap_applies_to_every_member(tmp_path, monkeypatch):
    from landscape.io import files as lio

    np.savez(tmp_path / "m.npz", a=np.ones((4, 2)), w=np.ones((4, 3)))
    assert lio.load_npz(tmp_path / "m.npz", required=("a", "w"))["w"].shape == (4, 3)
    monkeypatch.setattr(lio, "MAX_ARRAY_BYTES", 64)  # a holds 64 bytes, w 96
    with pytest.raises(ValueError, match="'w' declares shape"):
        lio.load_npz(tmp_path / "m.npz", required=("a", "w"), what="measure")
