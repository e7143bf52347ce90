"""The reproducibility tool behind the baseline tolerances (verification/reproducibility.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from verification import reproducibility
from verification.baseline import Tolerance
from verification.reproducibility import SAFETY, rounding_noise, spread_table


def test_rounding_noise_moves_results_by_about_one_ulp_and_only_inside_the_mode():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 40, generator=g, dtype=torch.float64), torch.randn(40, 20, generator=g, dtype=torch.float64)
    exact = x @ y
    with rounding_noise(1):
        noisy, noisy_erf = x @ y, torch.special.erf(x)
    rel = ((noisy - exact) / exact).abs()
    assert rel.max() > 0 and rel.max() <= 2 * torch.finfo(torch.float64).eps  # 1 + u·eps/2 rounds to a neighbour of 1
    assert not torch.equal(noisy_erf, torch.special.erf(x))
    assert torch.equal(x @ y, exact)  # the mode is gone after the block


def _results(path, values: dict[str, float], verdict="pass"):
    record = {"id": "toy", "verdict": verdict, "threshold": "", "metrics": {k: {"value": v} for k, v in values.items()}}
    path.write_text(json.dumps([record]))
    return path


def test_spread_table_measures_the_spread_and_judges_each_tolerance(tmp_path, monkeypatch):
    monkeypatch.setattr(reproducibility, "suite_tolerances", lambda ids: {"toy": {
        "loose": Tolerance(rtol=0.0, atol=1.0), "tight": Tolerance(rtol=0.0, atol=1e-3), "shown": Tolerance(compare=False)}})
    runs = {
        "reference": _results(tmp_path / "a.json", {"loose": 1.0, "tight": 1.0, "shown": 5.0}),
        "other": _results(tmp_path / "b.json", {"loose": 1.1, "tight": 1.01, "shown": 9.0}),
        "third": _results(tmp_path / "c.json", {"loose": 0.95, "tight": 1.0, "shown": 5.0}, verdict="fail"),
    }
    rows = {r["metric"]: r for r in spread_table(runs)}
    assert rows["loose"]["spread"] == pytest.approx(0.15)
    assert rows["loose"]["slack"] == pytest.approx(1.0) and rows["loose"]["sound"]  # 1.0 ≥ SAFETY · 0.15
    assert rows["tight"]["spread"] == pytest.approx(0.01) and not rows["tight"]["sound"]  # 1e-3 < SAFETY · 0.01
    assert rows["shown"]["sound"] and not rows["shown"]["compared"]
    assert rows["loose"]["verdicts"] == ["fail", "pass"]
    assert SAFETY * rows["loose"]["spread"] <= rows["loose"]["slack"]
    assert math.isinf(spread_table({"reference": runs["reference"]})[0]["slack_over_spread"])


def test_bad_claims_and_out_give_one_error_line_and_exit_2(tmp_path, capsys):
    assert reproducibility.main(["--out", str(tmp_path / "r"), "--claims", "no-such-claim"]) == 2
    (tmp_path / "file").write_text("x")
    assert reproducibility.main(["--out", str(tmp_path / "file")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert "no-such-claim" in lines[0] and "not a folder" in lines[1]
    assert not (tmp_path / "r").exists()
