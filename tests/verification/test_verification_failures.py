"""A broken core is a failed claim, not bad input (issue 12): NaN metrics, raising checks, tampered baselines.

Toy claims (modules made here and registered for the test) keep these fast; the tampered
baseline runs the real ``ill-conditioning`` claim (about 2 s) against a copy of the shipped
quick baseline.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import toy_claim

from landscape.cli import main
from verification import registry
from verification.baseline import DEFAULT_TOLERANCE
from verification.records import ClaimResult, Metric, json_safe
from verification.runner import SHIPPED_BASELINES, compare_with, suite_status, suite_tolerances
from verification.scenarios import write_evidence


def _nan_check(profile, out: Path, pool) -> ClaimResult:
    """A check whose core returned NaN: its evidence holds NaN and inf, one metric is undefined by design."""
    write_evidence(out, "evidence.json", {"loss": math.nan, "spectrum": np.array([1.0, math.inf, -math.inf])})
    return replace(
        toy_claim.check(profile, out, pool),
        id="toy-nan",
        metrics={"power": Metric(math.nan, 0.0, "2^10"), "plateau_variation": Metric(math.nan, math.nan, "none", applicable=False)},
    )


def _raising_check(profile, out: Path, pool) -> ClaimResult:
    raise ZeroDivisionError("a velocity divided by p_i = 0")


@pytest.fixture
def toy_claims(monkeypatch):
    """Registers ``toy-broken`` (raises), ``toy-nan`` (NaN metric) and ``toy`` (passes), in that suite order."""
    for claim_id, check in (("toy-broken", _raising_check), ("toy-nan", _nan_check)):
        module = types.ModuleType(f"toy_{claim_id.replace('-', '_')}")
        module.STATEMENT, module.TOLERANCES, module.check = f"{claim_id} (a test claim)", {}, check
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(registry.ALL_CHECKS, claim_id, module.__name__)
    monkeypatch.setitem(registry.ALL_CHECKS, "toy", "toy_claim")


def _verify(out: Path, *claims: str, extra: tuple[str, ...] = ()) -> int:
    return main(["verify", "--profile", "quick", "--claims", *claims, "--out", str(out), *extra])


def test_nan_metric_fails_the_claim_with_its_reason_and_a_report(tmp_path, capsys, toy_claims):
    out = tmp_path / "out"
    assert _verify(out, "toy-nan", "toy", extra=("--no-baseline",)) == 1
    printed = capsys.readouterr().out
    assert "FAILED: toy-nan: metric power is nan" in printed and printed.rstrip().endswith(f"report: {out / 'index.html'}")
    written = json.loads((out / "results.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert written["status"] == "fail" and written["counts"] == {"pass": 1, "fail": 1, "inconclusive": 0, "regressions": None}
    nan_claim, toy = written["results"]
    assert (nan_claim["verdict"], toy["verdict"]) == ("fail", "pass")
    assert len(nan_claim["failures"]) == 1 and "power" in nan_claim["failures"][0]  # the undefined-by-design metric is not one
    assert nan_claim["metrics"]["power"]["value"] is None and nan_claim["metrics"]["plateau_variation"]["applicable"] is False
    evidence = json.loads((out / "toy-nan" / "evidence.json").read_text())
    assert evidence == {"loss": None, "spectrum": [1.0, None, None]}
    html = (out / "index.html").read_text(encoding="utf-8")
    head = html.split('<section id="claim-', 1)[0]
    assert "banner-fail" in head and "toy-nan failed: metric power is nan" in head
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert summary.index("toy-nan failed: metric power is nan") < summary.index("## Claims")


def test_a_raising_check_fails_its_claim_and_the_rest_still_run(tmp_path, capsys, toy_claims):
    out = tmp_path / "out"
    assert _verify(out, "toy-broken", "toy-nan", "toy", extra=("--no-baseline",)) == 1
    written = json.loads((out / "results.json").read_text())
    assert [r["verdict"] for r in written["results"]] == ["fail", "fail", "pass"]
    broken = written["results"][0]
    assert broken["failures"] == ["the check raised ZeroDivisionError: a velocity divided by p_i = 0"]
    assert broken["statement"] == "toy-broken (a test claim)" and broken["evidence"] == ["toy-broken/traceback.txt"]
    assert "_raising_check" in (out / "toy-broken" / "traceback.txt").read_text()
    assert "ZeroDivisionError: a velocity divided by p_i = 0" in (out / "index.html").read_text(encoding="utf-8")
    assert "error:" not in capsys.readouterr().err


def test_a_user_folder_inside_out_is_refused_before_any_claim_runs(tmp_path, capsys, toy_claims):
    out = tmp_path / "out"
    assert _verify(out, "toy", extra=("--no-baseline", "--no-report")) == 0  # out is now verify's own folder
    shutil.rmtree(out / "toy")
    (out / "toy").mkdir()
    (out / "toy" / "notes.txt").write_text("mine")  # a user's folder where a claim writes its evidence
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert _verify(out, "toy-nan", "toy", extra=("--no-baseline",)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "out/toy' exists and was not made by landscape verify" in err
    assert sorted(p.name for p in out.iterdir()) == before  # toy-nan, earlier in the suite, did not run
    assert (out / "toy" / "notes.txt").read_text() == "mine"


def test_keyboard_interrupt_inside_a_check_is_not_a_claim_failure(tmp_path, monkeypatch, toy_claims, capsys):
    def interrupted(profile, out, pool):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["toy_toy_broken"], "check", interrupted)
    assert _verify(tmp_path / "out", "toy-broken", "toy", extra=("--no-baseline",)) == 130
    assert not (tmp_path / "out" / "results.json").exists()


def test_metrics_marked_not_applicable_are_never_compared(toy_claims):
    def record(value: float, applicable: bool = True) -> ClaimResult:
        return ClaimResult("toy", "s", "pass", {"power": Metric(1024.0), "variation": Metric(value, 0.0, "", applicable)}, "t")

    assert compare_with([record(math.nan, applicable=False)], [record(0.1)]) == []
    assert compare_with([record(0.5)], [record(math.nan, applicable=False)]) == []
    (change,) = compare_with([record(math.nan)], [record(0.1)])  # applicable and undefined: a regression
    assert change.regression and change.metric == "variation"
    again = ClaimResult.from_dict(json.loads(json.dumps(record(math.nan, applicable=False).to_dict())))
    assert again.metrics["variation"].applicable is False and math.isnan(again.metrics["variation"].value)
    old_file = {"id": "toy", "verdict": "pass", "metrics": {"m": {"value": 1.0}}, "threshold": "t"}
    assert ClaimResult.from_dict(old_file).metrics["m"].applicable is True  # absent means applicable
    assert record(math.inf).core_failures() == ["metric variation is inf (not finite): the core computed an undefined quantity"]
    assert record(math.nan, applicable=False).core_failures() == []


def test_json_safe_maps_non_finite_numbers_to_null_everywhere():
    payload = {"a": [1.0, math.nan, (math.inf, 2)], "b": np.float64(-math.inf), "c": np.arange(3), "d": "nan", "e": True}
    assert json_safe(payload) == {"a": [1.0, None, [None, 2]], "b": None, "c": [0, 1, 2], "d": "nan", "e": True}
    json.dumps(json_safe(payload), allow_nan=False)


def test_suite_status_counts_failures_regressions_and_inconclusive():
    assert suite_status(["pass", "inconclusive"], 0) == {
        "status": "pass", "counts": {"pass": 1, "fail": 0, "inconclusive": 1, "regressions": 0},
        "headline": "PASS: 1 of 2 claims pass; no regressions, 1 inconclusive",
    }
    assert suite_status(["pass", "pass"], 2)["headline"] == "FAIL: 2 of 2 claims pass; 2 regressions"
    assert suite_status(["fail", "pass"], None)["headline"] == "FAIL: 1 of 2 claims pass; 1 claim failed, no baseline compared"


def test_tampered_baseline_exits_1_and_the_first_screen_names_the_regression(tmp_path, capsys):
    """The real ill-conditioning claim (about 2 s) against the shipped quick baseline with one metric moved far away."""
    raw = json.loads((SHIPPED_BASELINES / "quick.json").read_text())
    records = raw["results"] if isinstance(raw, dict) else raw
    (record,) = [r for r in records if r["id"] == "ill-conditioning"]
    tolerances = suite_tolerances(["ill-conditioning"])["ill-conditioning"]
    name = next(n for n, m in record["metrics"].items()
                if m.get("value") is not None and m.get("applicable", True)
                and getattr(tolerances.get(n, DEFAULT_TOLERANCE), "compare", True))
    record["metrics"][name]["value"] = -1.0e6
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(raw))
    out = tmp_path / "out"
    assert main(["verify", "--profile", "quick", "--claims", "ill-conditioning", "--out", str(out), "--baseline", str(tampered)]) == 1
    assert f"REGRESSION: ill-conditioning {name}: -1000000.0 ->" in capsys.readouterr().out
    written = json.loads((out / "results.json").read_text())
    regression = next(r for r in written["regressions"] if r["metric"] == name)
    assert regression["old"] == -1.0e6 and regression["tolerance"] is not None and written["status"] == "fail"
    html = (out / "index.html").read_text(encoding="utf-8")
    first_screen = html.split('<section id="claim-', 1)[0]
    row = first_screen.split(f"<td data-label=\"metric\">{name}</td>", 1)[1].split("</tr>", 1)[0]
    assert "banner-fail" in first_screen and "Regressions against the baseline" in first_screen
    assert '<td data-label="old">-1e+06</td>' in row and "rtol" in row
    new_cell = row.split('<td data-label="new">', 1)[1].split("</td>", 1)[0]
    assert math.isclose(float(new_cell), regression["new"], rel_tol=1e-3)
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert summary.index(name.replace("_", "\\_")) < summary.index("## Claims")
