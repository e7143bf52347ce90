"""Mutation check: each one-line core bug of :mod:`tests.contract.mutants` makes the quick profile exit 1.

The three packages are copied to a temporary folder, one mutant is applied there (its
original text must occur exactly once), and ``python -m landscape.cli verify --profile quick
--claims <its claims> --no-baseline`` runs with ``PYTHONPATH`` on the copy. Exit status 1 means
a claim turned to ``fail`` (no baseline is compared: the mutants are caught by verdicts, not
by drift). The unmutated copy must exit 0 on the same claims, so the check can fail both ways.
Two mutants run at a time, one thread each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mutants import MUTANTS, Mutant  # tests/ is on sys.path (rootdir-less test modules)

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("landscape", "verification", "reports")
#: seconds one mutated ``verify`` may take (a mutant that hangs counts as not flagged).
TIMEOUT = 300
WORKERS = 2


@pytest.fixture(scope="module", autouse=True)
def compiled_kernels() -> None:
    """Compile the numba kernels into the source tree's ``__pycache__`` once, before it is copied.

    The copies keep ``__pycache__`` with the sources' modification times, so numba's cache
    (keyed on the source file's time and size) is reused there; only a mutated file recompiles.
    Without this every copy would compile the kernels afresh (about a CPU-minute each).
    """
    from landscape.cases import orthogonal_teacher_landscape, teacher_measure
    from landscape.dynamics.flow import Layout, ParticleFlow
    from landscape.dynamics.simulate import _initial_state

    for activation in ("erf", "relu", "sigmoid"):
        landscape = orthogonal_teacher_landscape(neurons=2, dim=3, activation=activation)
        layout = Layout(2, 2, 3, False)
        flow = ParticleFlow(landscape, layout)
        flow.linearize(_initial_state(landscape, layout, teacher_measure(2, 3))).jvp(_initial_state(landscape, layout, teacher_measure(2, 3)))


def mutated_copy(dest: Path, mutant: Mutant | None) -> Path:
    """Copy the packages (with their compiled caches) to ``dest`` and apply ``mutant`` (None: unmutated); returns ``dest``."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package)
    if mutant is not None:
        path = dest / mutant.path
        text = path.read_text(encoding="utf-8")
        count = text.count(mutant.original)
        if count != 1:
            raise AssertionError(f"mutant {mutant.name}: original text found {count} times in {mutant.path}, expected once.")
        path.write_text(text.replace(mutant.original, mutant.replacement), encoding="utf-8")
    return dest


def _env(copy: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


def run_verify(copy: Path, claims: tuple[str, ...]) -> subprocess.CompletedProcess:
    """``landscape verify --profile quick`` on ``claims`` from the copy, no baseline, no report."""
    command = [sys.executable, "-m", "landscape.cli", "verify", "--profile", "quick", "--claims", *claims,
               "--no-report", "--no-baseline", "--out", str(copy / "out")]
    try:
        return subprocess.run(command, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as err:
        return subprocess.CompletedProcess(command, -1, err.stdout or "", f"timed out after {TIMEOUT} s")


def test_every_mutant_applies_to_exactly_one_place():
    """The list cannot rot silently: each original text occurs exactly once in the current code."""
    assert len(MUTANTS) >= 16 and len({m.name for m in MUTANTS}) == len(MUTANTS)
    for mutant in MUTANTS:
        text = (ROOT / mutant.path).read_text(encoding="utf-8")
        assert text.count(mutant.original) == 1, mutant.name
        assert mutant.replacement != mutant.original and mutant.claims, mutant.name


@pytest.mark.slow
def test_the_unmutated_copy_passes_every_claim_the_mutants_use(tmp_path):
    copy = mutated_copy(tmp_path / "clean", None)
    probe = subprocess.run([sys.executable, "-c", "import landscape, verification, reports; print(landscape.__file__)"],
                           cwd=copy, env=_env(copy), capture_output=True, text=True, check=True)
    assert Path(probe.stdout.strip()).is_relative_to(copy)  # the copy, not the editable install, is what runs
    claims = tuple(sorted({c for m in MUTANTS for c in m.claims}))
    done = run_verify(copy, claims)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_the_quick_profile_flags_every_mutant(tmp_path):
    def flagged(mutant: Mutant) -> tuple[str, int, str]:
        done = run_verify(mutated_copy(tmp_path / mutant.name, mutant), mutant.claims)
        return mutant.name, done.returncode, (done.stdout + done.stderr)[-600:]

    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(flagged, MUTANTS))
    missed = [f"{name}: exit {code}\n{tail}" for name, code, tail in outcomes if code != 1]
    assert not missed, "mutants not flagged:\n" + "\n\n".join(missed)
