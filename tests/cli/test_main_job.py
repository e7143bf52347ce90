"""The main job as CI runs it: ``landscape verify --profile quick`` against the shipped baseline.

A baseline that drifts from the code (or a tolerance tighter than the code's own
reproducibility) fails here, so it cannot land.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_quick_profile_passes_against_the_shipped_baseline(tmp_path):
    out = tmp_path / "verify"
    run = subprocess.run([sys.executable, "-m", "landscape.cli", "verify", "--profile", "quick", "--out", str(out), "--no-report"],
                         capture_output=True, text=True, timeout=900)
    regressions = [line for line in run.stdout.splitlines() if line.startswith("REGRESSION")]
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr[-3000:]}"
    assert not regressions
    assert (out / "results.json").is_file()
