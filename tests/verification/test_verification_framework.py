"""The verification framework: records, baselines, task pools (joblib, Dask), the CLI and the pytest plugin."""

from __future__ import annotations

import json
import math

import pytest

from landscape.cli import main
from verification import registry
from verification.baseline import Tolerance, compare, load_baseline
from verification.parallel import TaskPool
from verification.records import ClaimResult, Metric
from verification.scenarios import EVIDENCE_MARKER, prepare_evidence_dir

pytest_plugins = ["pytester"]


@pytest.fixture
def toy_registry(monkeypatch):
    monkeypatch.setitem(registry.ALL_CHECKS, "toy", "toy_claim")


def _record(verdict="pass", value=1.0, uncertainty=0.0):
    return ClaimResult("c", "s", verdict, {"m": Metric(value, uncertainty)}, "t")


def test_record_round_trip_and_validation():
    record = ClaimResult("c", "s", "pass", {"m": Metric(1.5, 0.1, "d")}, "t", ["c/x.json"], [{"a": 1.0}], 2.0)
    again = ClaimResult.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record
    with pytest.raises(ValueError, match="verdict"):
        ClaimResult("c", "s", "maybe", {}, "t")
    with pytest.raises(ValueError, match="lacks"):
        ClaimResult.from_dict({"id": "c"})


def test_compare_flags_worse_verdicts_and_metrics_beyond_tolerance():
    tol = {"c": {"m": Tolerance(rtol=0.1, atol=0.0, sigmas=0.0)}}
    assert compare([_record(value=1.05)], [_record(value=1.0)], tol) == []
    moved = compare([_record(value=1.5)], [_record(value=1.0)], tol)
    assert len(moved) == 1 and moved[0].regression
    up_only = {"c": {"m": Tolerance(rtol=0.1, atol=0.0, sigmas=0.0, bad="up")}}
    assert not compare([_record(value=0.5)], [_record(value=1.0)], up_only)[0].regression
    worse = compare([_record("fail")], [_record("pass")], tol)
    assert worse[0].metric == "verdict" and worse[0].regression
    better = compare([_record("pass")], [_record("inconclusive")], tol)
    assert not better[0].regression
    noisy = {"c": {"m": Tolerance(rtol=0.0, atol=0.0, sigmas=4.0)}}
    assert compare([_record(value=1.3, uncertainty=0.1)], [_record(value=1.0, uncertainty=0.1)], noisy) == []


def test_task_pools_serial_joblib_and_dask_agree():
    distributed = pytest.importorskip("distributed")
    items = [(2.0, float(k)) for k in range(6)]
    serial = TaskPool().map(math.pow, items)
    assert TaskPool(jobs=2).map(math.pow, items) == serial
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, processes=True) as cluster:
        assert TaskPool(scheduler=cluster.scheduler_address).map(math.pow, items) == serial


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler"):
        TaskPool(scheduler="tcp://127.0.0.1:9", connect_timeout=1.0).map(math.pow, [(2.0, 1.0)])


def test_evidence_folders_are_replaced_only_when_made_by_verify(tmp_path):
    made = prepare_evidence_dir(tmp_path / "claim")
    (made / "old.txt").write_text("x")
    again = prepare_evidence_dir(tmp_path / "claim")
    assert sorted(p.name for p in again.iterdir()) == [EVIDENCE_MARKER]
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="not made by landscape verify"):
        prepare_evidence_dir(user)
    assert (user / "thesis.tex").read_text() == "precious"


def test_verify_cli_baseline_round_trip_and_tampered_baseline_exits_1(tmp_path, capsys, toy_registry):
    base = tmp_path / "baseline.json"
    args = ["verify", "--profile", "quick", "--claims", "toy", "--out", str(tmp_path / "out"), "--no-report"]
    assert main([*args, "--baseline", str(base), "--update-baseline"]) == 0
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["schema"] == 2 and written["status"] == "pass" and written["regressions"] == []
    assert written["provenance"]["profile"] == "quick" and "--claims toy" in written["provenance"]["command"]
    results = written["results"]
    assert results[0]["id"] == "toy" and results[0]["verdict"] == "pass"
    assert {"id", "verdict", "metrics", "threshold"} <= set(results[0])
    assert load_baseline(base)[0].metrics["power"].value == 1024
    assert main([*args, "--baseline", str(base)]) == 0
    raw = json.loads(base.read_text())
    raw[0]["metrics"]["power"]["value"] = 1000.0
    base.write_text(json.dumps(raw))
    capsys.readouterr()
    assert main([*args, "--baseline", str(base)]) == 1
    assert "REGRESSION: toy power" in capsys.readouterr().out
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["status"] == "fail" and written["counts"]["regressions"] == 1
    (regression,) = written["regressions"]
    assert (regression["claim"], regression["metric"], regression["old"], regression["new"]) == ("toy", "power", 1000.0, 1024.0)
    assert regression["tolerance"]["rtol"] == 1e-12 and written["provenance"]["baseline"] == str(base)
    assert load_baseline(tmp_path / "out" / "results.json")[0].metrics["power"].value == 1024  # the new form reads back


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--claims", "nonsense"], "unknown claim"),
        (["--profile", "huge"], "unknown profile"),
        (["--jobs", "0"], "jobs"),
        (["--baseline", "/nonexistent/results.json"], "does not exist"),
        (["--no-baseline", "--update-baseline"], "cannot be combined"),
    ],
)
def test_verify_cli_bad_input_exits_2_before_running(extra, message, tmp_path, capsys, toy_registry):
    status = main(["verify", "--claims", "toy", "--out", str(tmp_path / "out"), "--no-report", *extra])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error:") and message in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_verify_cli_refuses_an_output_path_that_is_a_file(tmp_path, capsys, toy_registry):
    (tmp_path / "taken").write_text("a user's file")
    status = main(["verify", "--claims", "toy", "--out", str(tmp_path / "taken"), "--no-report", "--no-baseline"])
    assert status == 2 and "not a folder" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "a user's file"


def test_verify_cli_rejects_a_malformed_baseline(tmp_path, capsys, toy_registry):
    (tmp_path / "b.json").write_text('[{"id": "toy"}]')
    status = main(["verify", "--claims", "toy", "--out", str(tmp_path / "o"), "--no-report", "--baseline", str(tmp_path / "b.json")])
    assert status == 2 and "lacks" in capsys.readouterr().err


def test_pytest_plugin_runs_a_claim_and_fails_on_regression(pytester, tmp_path, toy_registry):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"id": "toy", "verdict": "pass", "metrics": {"power": {"value": 1024.0}}, "threshold": "t"}]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "toy", "verdict": "pass", "metrics": {"power": {"value": 1.0}}, "threshold": "t"}]))
    pytester.makepyfile(
        f"""
        def test_good(verify_claim):
            assert verify_claim("toy", baseline={str(good)!r}).verdict == "pass"

        def test_regressed(verify_claim):
            verify_claim("toy", baseline={str(bad)!r})
        """
    )
    result = pytester.runpytest_inprocess()  # the plugin loads through its pytest11 entry point
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*REGRESSION: toy power*"])
