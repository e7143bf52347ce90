"""``--out`` folders: nothing overwritten that the tool did not make (``landscape.io.files.claim_output_folder``).

For each of ``train``, ``analyze``, ``report`` and ``verify``: a folder holding a user's file
is refused (exit 2, one ``error:`` line, the folder byte for byte as it was), a folder the
same command made is reused, ``--force`` writes anyway (the user's file kept), and a folder
another command made is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import ERF_TEACHER_TOML

from landscape.cli import main
from landscape.io.files import check_output_folder, claim_output_folder, output_marker
from verification import registry
from verification.scenarios import EVIDENCE_MARKER

COMMANDS = ("train", "analyze", "report", "verify")
#: a command whose folders each command must refuse (not one it accepts on purpose)
OTHER = {"train": "analyze", "analyze": "verify", "report": "train", "verify": "report"}


@pytest.fixture
def toy_registry(monkeypatch):
    monkeypatch.setitem(registry.ALL_CHECKS, "toy", "toy_claim")


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A problem, a measure and a finished train run (the report's input)."""
    (tmp_path / "train.toml").write_text(ERF_TEACHER_TOML + "[init]\nparticles = 2\n[dynamics]\nsteps = 2\n")
    (tmp_path / "analyze.toml").write_text(ERF_TEACHER_TOML)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mu.npz", a=rng.standard_normal((3, 2)), w=0.7 * rng.standard_normal((3, 3)))
    assert main(["train", "--problem", str(tmp_path / "train.toml"), "--out", str(tmp_path / "input-run"), "--quiet"]) == 0
    return tmp_path


def _argv(command: str, inputs: Path, out: Path) -> list[str]:
    if command == "train":
        return ["train", "--problem", str(inputs / "train.toml"), "--out", str(out), "--quiet"]
    if command == "analyze":
        return ["analyze", "--problem", str(inputs / "analyze.toml"), "--measure", str(inputs / "mu.npz"), "--out", str(out)]
    if command == "report":
        return ["report", str(inputs / "input-run"), "--out", str(out)]
    return ["verify", "--claims", "toy", "--profile", "quick", "--no-baseline", "--no-report", "--out", str(out)]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(capsys, argv: list[str], folder: Path) -> None:
    """Exit 2, one line naming the folder and --force, nothing in ``folder`` changed."""
    before = _files(folder)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"error: --out {str(folder)!r} is not empty"), err
    assert "--force" in err
    assert _files(folder) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_a_users_folder_is_refused_unless_forced(command, inputs, tmp_path, capsys, toy_registry):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    _refused(capsys, _argv(command, inputs, folder), folder)
    assert main([*_argv(command, inputs, folder), "--force"]) == 0
    capsys.readouterr()
    assert (folder / "thesis.tex").read_text() == "precious"
    assert (folder / output_marker(command)).read_text() == f"{command}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_made_by_the_same_command_is_reused(command, inputs, tmp_path, capsys, toy_registry):
    """New (created) and empty folders are taken; a second run reuses the folder (train: with --resume)."""
    folder = tmp_path / "new" / "out"
    assert main(_argv(command, inputs, folder)) == 0
    again = [*_argv(command, inputs, folder), *(["--resume"] if command == "train" else [])]
    assert main(again) == 0
    (tmp_path / "empty").mkdir()
    assert main(_argv(command, inputs, tmp_path / "empty")) == 0
    assert (tmp_path / "empty" / output_marker(command)).is_file()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_made_by_another_command_is_refused(command, inputs, tmp_path, capsys, toy_registry):
    folder = claim_output_folder(tmp_path / "other", OTHER[command])
    (folder / "results.json").write_text("[]")
    _refused(capsys, _argv(command, inputs, folder), folder)


def test_accepted_neighbours_and_a_file(inputs, tmp_path, capsys):
    """analyze into a train run directory and report into its own input folder are accepted; a file is refused."""
    run = inputs / "input-run"
    assert main(["analyze", "--problem", str(inputs / "analyze.toml"), "--measure", str(inputs / "mu.npz"), "--out", str(run)]) == 0
    assert main(["report", str(run), "--out", str(run)]) == 0
    assert {"analysis.json", "index.html", ".landscape-train", ".landscape-analyze", ".landscape-report"} <= set(_files(run))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    assert main(["report", str(run), "--out", str(mine)]) == 2  # not its input: refused
    capsys.readouterr()
    with pytest.raises(ValueError, match="exists and is not a folder"):
        check_output_folder(mine / "notes.txt", "report")


def test_the_verify_marker_is_the_evidence_marker():
    """One name marks what ``landscape verify`` made, at the top and in each claim's evidence folder."""
    assert output_marker("verify") == EVIDENCE_MARKER
