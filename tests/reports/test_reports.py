"""Reports (issue 6): build from synthetic verify/train/analyze outputs, check numbers, escaping, CLI, browser."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from landscape.cli import main
from landscape.dynamics import Trajectory, read_trajectory
from landscape.dynamics.rundir import COLUMNS
from landscape.io.files import save_npz
from reports import fig_joint, fig_points
from reports.build import build_report
from reports.inputs import read_verify
from reports.markdown import md_escape
from reports.phases import find_phases, find_plateaus

EVIL = '<script>alert("x")</script>'
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--virtual-time-budget=5000",
]


# ------------------------------------------------------------------ synthetic inputs
def write_run(folder: Path, n: int = 301) -> Path:
    """A run directory whose loss sits on a plateau, drops at t ≈ 12, then settles; one kick, two birth–death steps."""
    folder.mkdir(parents=True)
    t = np.linspace(0.0, 30.0, n)
    loss = 0.005 + 0.305 / (1.0 + np.exp(2.0 * (t - 12.0)))
    grad = np.abs(np.gradient(loss, t)) + 1e-9
    sigma = 0.06 * (1.0 + 0.05 * np.sin(t)) * np.where(t < 12, 1.0, 2.0)
    events = {5: "kick:isotropic", 100: "death:1;birth:1", 150: "death:2;birth:2"}
    lines = [",".join(COLUMNS)]
    for i in range(n):
        row = {"step": i, "time": t[i], "loss": loss[i], "energy": loss[i], "grad_norm": grad[i], "sigma_min": sigma[i],
               "sigma_cond": 10.0, "entropy": 1.0, "energy_defect": 0.0, "step_size": 0.1, "events": events.get(i, "")}
        lines.append(",".join(repr(float(row[c])) if c not in ("step", "events") else str(row[c]) for c in COLUMNS))
    (folder / "trajectory.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "config.toml").write_text(
        '[teacher]\nu = [[1.5, 0.0, 0.0, 0.0], [0.0, 1.5, 0.0, 0.0], [0.0, 0.0, 1.5, 0.0]]\n\n[task]\nnoise = 0.1\nprompt_length = "inf"\n',
        encoding="utf-8",
    )
    return folder


def write_analysis(folder: Path, name: str = "saddle") -> Path:
    """An analyze output at the dead-neuron saddle (docs/theory.md §9): analysis.json, psi0.npz, measure.npz, config.toml."""
    folder.mkdir(parents=True)
    w = 1.5 * np.eye(4)[[0, 1, 3]]
    psi_w = np.zeros((3, 4))
    psi_w[2] = [0.0, 0.0, 0.7, -0.1]
    save_npz(folder / "measure.npz", a=np.eye(3), w=w, p=np.full(3, 1 / 3))
    save_npz(folder / "psi0.npz", a=np.zeros((3, 3)), w=psi_w)
    (folder / "config.toml").write_text("[teacher]\nu = [[1.5, 0.0, 0.0, 0.0], [0.0, 1.5, 0.0, 0.0], [0.0, 0.0, 1.5, 0.0]]\n")
    analysis = {
        "name": name, "loss": 0.3100177709578634, "loss_star": 0.005, "grad_norm": 2.8e-16, "sigma_min": 0.0678,
        "classification": "strict_saddle",
        "hessian": {"lambda_min": -0.0521, "residual": 1e-12, "null_dim": 9, "zero_count": 9, "converged": True,
                    "hvp_count": 120, "eigenvalues": [-0.0521, 0.013, 0.2, 0.41]},
        "curvature": {"ratio": -3.2, "bound_constant": 1.1, "r1": 1.0},
        "warnings": [f"note with {EVIL}"],
    }
    (folder / "analysis.json").write_text(json.dumps(analysis), encoding="utf-8")
    return folder


def write_verify(folder: Path) -> list[dict]:
    """A verify output: results.json with three claims, the rates and benign-landscape evidence files, a run, an analysis."""
    records = [
        {"id": "rates", "statement": "Near a global minimum L − L* decays at about 2λ⁺_min.", "verdict": "pass",
         "metrics": {"decay_ratio": {"value": 0.9731234567891234, "uncertainty": 0.0123, "description": "fitted / predicted"},
                     "escape_margin": {"value": 0.25, "uncertainty": 0.0, "description": "margin"}},
         "threshold": "|ratio − 1| ≤ 0.2", "evidence": ["rates/escape.json", "rates/decay.json"], "table": [], "seconds": 1.5},
        {"id": "benign-landscape", "statement": f"Every critical point is a minimum or a strict saddle {EVIL}", "verdict": "fail",
         "metrics": {"degenerate_count": {"value": 1.0, "uncertainty": 0.0, "description": "degenerate points"},
                     "ratio": {"value": -1.5e-07, "uncertainty": None, "description": "curvature"}},
         "threshold": "no degenerate point", "evidence": ["benign-landscape/critical_points.json"],
         "table": [{"point": EVIL, "loss": 0.31, "class": "strict_saddle"}], "seconds": 2.0},
        {"id": "conditioning", "statement": "λ_min(Σ_µµ) stays bounded below.", "verdict": "inconclusive",
         "metrics": {"max_variation": {"value": None, "uncertainty": None, "description": "undefined"}},
         "threshold": "variation ≤ 25% per phase", "evidence": ["conditioning/run0"], "table": [], "seconds": 0.5},
    ]
    folder.mkdir(parents=True, exist_ok=True)
    regression = {"claim": "rates", "metric": "decay_ratio", "old": 0.9931, "new": 0.9731234567891234,
                  "tolerance": {"rtol": 0.001, "atol": 0.0, "sigmas": 0.0, "bad": "either"}, "regression": True,
                  "note": "moved down by 0.02 > tolerance 0.000993"}
    results = {"schema": 2, "status": "fail", "counts": {"pass": 1, "fail": 1, "inconclusive": 1, "regressions": 1},
               "headline": "ignored: recomputed from the records", "regressions": [regression], "changes": [regression],
               "provenance": {"command": "landscape verify --profile quick", "profile": "quick", "baseline": "quick.json",
                              "torch_threads": 1, "blas": [{"internal_api": "openblas", "version": "0.3", "num_threads": 1}],
                              "seconds": {"total": 4.0, "per_claim": {"rates": 1.5}}},
               "results": records}
    (folder / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    rates = folder / "rates"
    rates.mkdir()
    radii = [1e-1, 1e-2, 1e-3, 1e-4]
    (rates / "escape.json").write_text(json.dumps({
        "radii": radii, "escape_times": [10 * np.log(1 / r) + 3 for r in radii], "lambda_min": -0.095, "fitted_slope": 10.0}))
    t = np.linspace(0, 20, 50)
    (rates / "decay.json").write_text(json.dumps({
        "time": t.tolist(), "gap": (0.1 * np.exp(-0.4 * t)).tolist(), "lambda_plus_min": 0.21, "fitted_rate": 0.4}))
    benign = folder / "benign-landscape"
    benign.mkdir()
    (benign / "critical_points.json").write_text(json.dumps([
        {"name": "teacher", "classification": "global_minimum", "loss": 0.005, "lambda_min": 0.01, "null_dim": 9,
         "zero_count": 9, "curvature_ratio": None, "bound": None, "spectrum": [0.01, 0.2, 0.5],
         "null_spectrum": [1e-12, -2e-12, 3e-13]},
        {"name": EVIL, "classification": "strict_saddle", "loss": 0.31, "lambda_min": -0.05, "null_dim": 9, "zero_count": 9,
         "curvature_ratio": -3.0, "bound": 1.2, "spectrum": [-0.05, 0.02, 0.3]},
        {"name": "degenerate $\\bad{$", "classification": "degenerate", "loss": 0.2, "lambda_min": 0.0, "null_dim": 9,
         "zero_count": 10, "curvature_ratio": -0.4, "bound": 1.2},
    ]))
    write_analysis(benign / "saddle")
    write_run(folder / "conditioning" / "run0")
    return records


@pytest.fixture(scope="module")
def verify_report(tmp_path_factory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("verify")
    records = write_verify(folder)
    build_report(folder, folder)
    return folder, records


# ------------------------------------------------------------------------ tests
def _concise(cell: str) -> tuple[float, float | None, float]:
    """``(value, uncertainty or None, half a unit of the last digit shown)`` of a cell written by format_uncertain."""
    if "±" in cell:
        value, err = (float(x) for x in cell.split("±"))
        return value, err, 5e-4 * abs(value)
    match = re.fullmatch(r"(-?\d+)(?:\.(\d+))?\((\d+)\)(?:e(-?\d+))?", cell)
    if match is None:
        return float(cell), None, 5e-4 * abs(float(cell))  # 4 significant digits
    whole, decimals, err_digits, exponent = match.groups()
    unit = 10.0 ** (int(exponent or 0) - len(decimals or ""))
    return float(f"{whole}.{decimals or 0}") * 10.0 ** int(exponent or 0), int(err_digits) * unit, 0.5 * unit


def test_markdown_holds_the_numbers_of_results_json(verify_report):
    """Every metric to its shown digits: the value and its uncertainty within half a unit of the last digit."""
    folder, records = verify_report
    text = (folder / "summary.md").read_text(encoding="utf-8")
    for record in records:
        section = text.split(f"## {md_escape(record['id'])}: ", 1)[1].split("\n## ", 1)[0]
        rows = {}
        for line in section.split("**Metrics**", 1)[1].split("\n\n", 2)[1].splitlines()[2:]:
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0].replace("\\", "")] = cells[1]
        assert rows.keys() == record["metrics"].keys()
        for name, metric in record["metrics"].items():
            if metric["value"] is None:
                assert rows[name] == "n/a"
                continue
            value, err, half_unit = _concise(rows[name])
            assert abs(value - metric["value"]) <= half_unit, (name, rows[name])
            if metric["uncertainty"]:
                assert err is not None and abs(err - metric["uncertainty"]) <= half_unit, (name, rows[name])
        assert record["verdict"] in section.split("\n", 1)[0]
    assert "0.973(12)" in text  # decay_ratio 0.97312… ± 0.0123


def test_verify_report_leads_with_status_regressions_and_provenance(verify_report):
    folder, _ = verify_report
    html = (folder / "index.html").read_text(encoding="utf-8")
    head = html.split('<section id="claims"', 1)[0]
    assert '<div class="banner banner-fail" id="status"' in head
    assert "FAIL: 1 of 3 claims pass; 1 claim failed, 1 regression, 1 inconclusive" in head
    row = head.split('<td data-label="claim">rates</td>', 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[:3] == ["decay_ratio", "0.9931", "0.9731"] and cells[3].startswith("rtol 0.001")
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert summary.index("**FAIL: 1 of 3") < summary.index("| rates | decay\\_ratio | 0.9931 | 0.9731 |") < summary.index("## Claims")
    provenance = html.split('<section id="provenance">', 1)[1].split("</section>", 1)[0]
    assert "landscape verify --profile quick" in provenance and "openblas 0.3: 1 threads" in provenance


def test_schema_1_results_still_read(tmp_path):
    """A results.json that is the bare list of records (before schema 2) gives the same claims, no baseline recorded."""
    records = [{"id": "toy", "verdict": "fail", "metrics": {"m": {"value": 1.0}}, "threshold": "t"}]
    (tmp_path / "results.json").write_text(json.dumps(records))
    output = read_verify(tmp_path / "results.json")
    assert [c.id for c in output.claims] == ["toy"] and output.status == "fail" and not output.compared
    assert output.regressions == [] and output.provenance == {}
    build_report(tmp_path, tmp_path / "report")
    assert "toy failed: threshold not met (t)" in (tmp_path / "report" / "index.html").read_text(encoding="utf-8")


def test_html_escapes_user_text(verify_report):
    folder, _ = verify_report
    html = (folder / "index.html").read_text(encoding="utf-8")
    assert "<script>alert" not in html
    assert html.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 3  # statement, table cell, note
    assert '<table class="claims">' in html
    assert "<script>" in html  # only the page's own image check


def test_verify_report_draws_every_evidence_figure(verify_report):
    folder, _ = verify_report
    figures = {p.name for p in (folder / "figures").iterdir()}
    for stem in ("claim-rates-escape", "claim-rates-decay", "claim-benign-landscape-spectra", "claim-benign-landscape-curvature",
                 "claim-benign-landscape-analysis0-saddle-psi0", "claim-conditioning-run0-run0-sigma"):
        assert {f"{stem}.png", f"{stem}.svg"} <= figures, stem
    html = (folder / "index.html").read_text(encoding="utf-8")
    assert html.count("<img ") == len(figures) // 2


def test_run_report_finds_the_plateau_and_phases(tmp_path):
    run = write_run(tmp_path / "run")
    traj = read_trajectory(run / "trajectory.csv")
    plateaus = find_plateaus(traj)
    assert [p.final for p in plateaus] == [False, True]
    assert plateaus[0].t_start == 0.0 and 8.0 < plateaus[0].t_stop < 12.0
    phases = find_phases(traj, plateaus)
    beyond = [p for p in phases if p.variation > 0.25]  # σ_min doubles at t = 12, within the descent
    assert len(beyond) == 1 and beyond[0].t_start < 12.0 < beyond[0].t_stop
    index = build_report(run, tmp_path / "out")
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "| plateau | 0 |" in summary and "kick events | 1" in summary and index.is_file()
    again = build_report(run, tmp_path / "again")  # reproducible to the byte (no dates, fixed SVG ids)
    assert again.read_bytes() == index.read_bytes()


# ------------------------------------------------------------------ plateau rule on a log scale
PAPER_RUN = Path(__file__).parents[1] / "data" / "paper_run_trajectory.csv"


def _trajectory(t: np.ndarray, loss: np.ndarray, grad: np.ndarray | None = None) -> Trajectory:
    grad = np.abs(np.gradient(loss, t)) if grad is None else grad
    return Trajectory({"time": t, "loss": loss, "grad_norm": grad}, [""] * len(t))


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def test_paper_run_plateaus_are_the_three_steps_of_the_staircase():
    """The paper scenario's run (85 rows): plateau ≈ 0.020, shoulders ≈ 0.0102 and 0.0056, then a tail still falling ~6%/unit."""
    traj = read_trajectory(PAPER_RUN)
    plateaus = find_plateaus(traj)
    assert not any(p.final for p in plateaus), "the tail still falls by ~6% per time unit: not settled"
    expected = [((0.14, 1.07), 0.020), ((2.4, 3.4), 0.0102), ((4.6, 5.4), 0.0056)]
    assert len(plateaus) == len(expected), [(p.t_start, p.t_stop) for p in plateaus]
    for p, (interval, level) in zip(plateaus, expected):
        assert abs(p.loss / level - 1) <= 0.15, (p, level)
        assert _overlap((p.t_start, p.t_stop), interval) >= 0.5 * (interval[1] - interval[0]), (p, interval)
    tail = traj["loss"][traj["time"] >= 10.0]
    assert tail[0] / tail[-1] > 1.05  # the data: the loss still falls at the end
    phases = find_phases(traj, plateaus)
    assert len(phases) >= 2 * len(plateaus)  # each plateau and each drop after it is a phase


@pytest.mark.parametrize("scale", [1.0, 1e-4])
def test_log_staircase_plateaus_are_recovered_at_any_scale(scale):
    """Three drops by a factor 10 each (at t = 3, 6, 9) on a loss creeping down 5% per time unit; the tail is not settled."""
    t = 12.0 * np.linspace(0.0, 1.0, 481) ** 1.5  # uneven steps, as an adaptive integrator records
    centres, width, creep = np.array([3.0, 6.0, 9.0]), 0.1, 0.05
    log_loss = -np.log(10.0) * (1 / (1 + np.exp(-(t[:, None] - centres) / width))).sum(axis=1) - creep * t
    plateaus = find_plateaus(_trajectory(t, scale * np.exp(log_loss)))
    assert not any(p.final for p in plateaus)
    assert len(plateaus) == 3, [(p.t_start, p.t_stop) for p in plateaus]
    edges = [0.0, *centres]
    for k, p in enumerate(plateaus):
        lo, hi = edges[k], edges[k + 1]
        assert lo <= p.t_start <= lo + 0.6 and hi - 0.6 <= p.t_stop < hi, (p, lo, hi)
        assert abs(p.loss / (scale * 10.0**-k * np.exp(-creep * (lo + hi) / 2)) - 1) < 0.1


def test_run_whose_loss_flattens_at_its_end_has_settled():
    t = np.linspace(0.0, 20.0, 401)
    loss = 0.01 + 0.3 * np.exp(-t)  # no plateau on the way: the relative rate only slows down
    plateaus = find_plateaus(_trajectory(t, loss))
    assert [p.final for p in plateaus] == [True]
    assert 5.0 < plateaus[0].t_start < 12.0 and plateaus[0].t_stop == 20.0
    assert abs(plateaus[0].loss / 0.01 - 1) < 1e-3


def test_exponential_decay_has_no_plateau_and_does_not_settle():
    t = 20.0 * np.linspace(0.0, 1.0, 300) ** 2
    loss = 0.3 * np.exp(-0.5 * t)  # four decades at a constant relative rate
    assert find_plateaus(_trajectory(t, loss)) == []


def test_analysis_report_draws_spectrum_psi0_and_curvature(tmp_path):
    folder = write_analysis(tmp_path / "analysis")
    build_report(folder, tmp_path / "out")
    names = {p.stem for p in (tmp_path / "out" / "figures").glob("*.png")}
    assert names == {"analysis-spectrum", "analysis-psi0", "analysis-curvature"}
    assert "&lt;script&gt;" in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")


def test_report_command_exit_2_and_writes_nothing_on_bad_input(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["report", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: report input")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text('[{"id": "x"}]')
    assert main(["report", str(tmp_path / "bad"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lacks verdict" in err
    assert not out.exists()


def test_report_command_on_a_real_training_run(tmp_path):
    problem = tmp_path / "p.toml"
    example = Path(__file__).parents[2] / "landscape" / "examples"
    problem.write_text((example / "teacher_student.toml").read_text(encoding="utf-8") + f"""
[init]
kind = "saddle"
measure = "{(example / 'saddle.npz').as_posix()}"

[dynamics]
steps = 150
step_size = 0.2
integrator = "rk4"
record_every = 1

[dynamics.perturbation]
kind = "isotropic"
g_thr = 1e-4
t_thr = 5.0
radius = 0.01
""", encoding="utf-8")
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "run")]) == 0
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
    summary = (tmp_path / "report" / "summary.md").read_text(encoding="utf-8")
    assert "| plateau | 0 |" in summary and "kick events | 1" in summary


# ---------------------------------------------------------------- the browser
CHROMIUM = "/usr/bin/chromium"  # the Debian package ``chromium``; .ci/run installs it

#: appended to a copy of a page: once loaded, records each section's height (in viewport heights),
#: the banner's bottom edge, and every element reaching past the viewport's sides (outside the
#: tables' own scroll boxes, with every <details> opened) in ``data-layout`` on <body>.
LAYOUT_PROBE = """<script>
window.addEventListener("load", function () {
  var vw = document.documentElement.clientWidth, vh = window.innerHeight, banner = document.getElementById("status");
  var out = {vh: vh, sections: {}, wide: [], bannerBottom: banner ? banner.getBoundingClientRect().bottom : null};
  document.querySelectorAll("section[id]").forEach(function (s) { out.sections[s.id] = s.getBoundingClientRect().height / vh; });
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  document.querySelectorAll("body *").forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (!el.closest(".scroll") && r.width > 0 && (r.right > vw + 1 || r.left < -1)) { out.wide.push(el.tagName + " " + r.right); }
  });
  out.pageWidth = document.documentElement.scrollWidth / vw;
  document.body.setAttribute("data-layout", JSON.stringify(out));
});
</script>"""


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless Chromium binary; the browser tests skip where it is not installed."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"headless Chromium is not installed at {CHROMIUM} (.ci/run installs the Debian package chromium).")
    return CHROMIUM


def _browse(chromium: str, profile: Path, *args: str, size: str = "390,844") -> subprocess.CompletedProcess:
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--window-size={size}", f"--user-data-dir={profile}", *args],
                          check=False, capture_output=True, text=True, timeout=180)


def layout(chromium: str, page: Path, size: str, profile: Path) -> dict:
    """The page's layout as :data:`LAYOUT_PROBE` measures it, in a window of ``size`` (``"width,height"``)."""
    probe = page.with_name(f"probe-{size.replace(',', 'x')}.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", LAYOUT_PROBE + "</body>"), encoding="utf-8")
    dom = _browse(chromium, profile, "--dump-dom", probe.as_uri(), size=size)
    probe.unlink()
    assert dom.returncode == 0, dom.stderr[-2000:]
    return json.loads(html.unescape(re.search(r'data-layout="([^"]*)"', dom.stdout).group(1)))


def test_html_report_loads_in_headless_chromium(chromium, verify_report, tmp_path):
    folder, records = verify_report
    url = (folder / "index.html").as_uri()
    dom = _browse(chromium, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    count = int(re.search(r'data-image-count="(\d+)"', body).group(1))
    assert 'data-images-loaded="all"' in body and count == len(list((folder / "figures").glob("*.png")))
    claims = re.search(r'<table class="claims">.*?</table>', dom.stdout, re.DOTALL).group(0)
    assert claims.count("<tr>") == len(records) + 1
    shot = tmp_path / "phone.png"
    result = _browse(chromium, tmp_path / "profile-shot", f"--screenshot={shot}", url)
    assert result.returncode == 0 and shot.is_file() and shot.stat().st_size > 10_000, result.stderr[-2000:]


def test_html_report_layout_in_headless_chromium(chromium, verify_report, tmp_path):
    """On a desktop window each claim fits 2.5 screens and the regression banner the first; nothing is wider than a phone."""
    folder, records = verify_report
    desktop = layout(chromium, folder / "index.html", "1280,900", tmp_path / "profile-desktop")
    claims = {k: v for k, v in desktop["sections"].items() if k.startswith("claim-")}
    assert len(claims) == len(records) and max(claims.values()) <= 2.5, claims
    assert desktop["bannerBottom"] is not None and desktop["bannerBottom"] <= desktop["vh"]
    assert desktop["wide"] == [] and desktop["pageWidth"] <= 1.0
    phone = layout(chromium, folder / "index.html", "390,844", tmp_path / "profile-phone")
    assert phone["wide"] == [] and phone["pageWidth"] <= 1.0, phone["wide"]


def test_curvature_figure_labels_do_not_overlap():
    """Long point names and close bars (the benign-landscape figure): no two tick or value labels overlap."""
    rows = [fig_points.CurvatureRow(f"§9 saddle, {k} dead, random a, perturbed 1e-3 from the teacher", -100.0 * (k + 1), -0.05)
            for k in range(7)]
    fig = fig_points.curvature_figure(rows)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # the constrained layout places everything
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.get_xticklabels() if t.get_text()] + [t for t in ax.texts if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert len(labels) == 3 * len(rows)
    for i, a in enumerate(boxes):
        assert fig.bbox.contains(a.x0, a.y0) and fig.bbox.contains(a.x1, a.y1), labels[i].get_text()
        for j in range(i + 1, len(boxes)):
            assert not a.overlaps(boxes[j]), (labels[i].get_text(), labels[j].get_text())


def test_report_command_draws_psi0_from_given_measure_and_problem(tmp_path):
    folder = write_analysis(tmp_path / "analysis")
    (folder / "measure.npz").rename(tmp_path / "mu.npz")
    (folder / "config.toml").rename(tmp_path / "problem.toml")
    assert main(["report", str(folder), "--out", str(tmp_path / "a")]) == 0
    assert not (tmp_path / "a" / "figures" / "analysis-psi0.png").exists()
    assert "pass --measure and --problem" in (tmp_path / "a" / "summary.md").read_text(encoding="utf-8")
    args = ["--measure", str(tmp_path / "mu.npz"), "--problem", str(tmp_path / "problem.toml")]
    assert main(["report", str(folder), "--out", str(tmp_path / "b"), *args]) == 0
    assert (tmp_path / "b" / "figures" / "analysis-psi0.svg").is_file()
    run = write_run(tmp_path / "run")
    assert main(["report", str(run), "--out", str(tmp_path / "c"), *args]) == 2
    assert not (tmp_path / "c").exists()


def _joint_evidence(folder: Path, paper: object) -> None:
    """A verify output with one joint-training record, its trajectories.json and ``paper`` as paper_comparison.json."""
    t = np.linspace(0.0, 2.0, 41)

    def run(scale: float, **extra) -> dict:
        return {"time": t.tolist(), "loss": (0.05 + 0.1 * np.exp(-scale * t)).tolist(), "status": "completed", **extra}

    record = {"id": "joint-training", "statement": "joint ≈ flow", "verdict": "inconclusive",
              "metrics": {"paper_gap": {"value": 0.55, "uncertainty": 0.0, "description": "gap"}}, "threshold": "gap ≤ 0.2",
              "evidence": ["joint-training/trajectories.json", "joint-training/paper_comparison.json"], "table": [], "seconds": 1.0}
    results = {"schema": 2, "status": "pass", "regressions": [], "changes": [], "results": [record],
               "provenance": {"command": "landscape verify", "profile": "full", "seconds": {"total": 1.0}}}
    claim = folder / "joint-training"
    claim.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (claim / "trajectories.json").write_text(json.dumps({
        "flow": run(3.0), "sampled_flow": run(2.9),
        "joint": [run(2.0, attention_rate=r, batch=b, seed=s) for r, b in ((2.0, 32), (20.0, 512)) for s in (0, 1)],
        "control": [run(1.5, attention_rate=0.0, batch=512, seed=s) for s in (0, 1)]}))
    (claim / "paper_comparison.json").write_text(json.dumps(paper))


def test_verify_report_draws_the_joint_training_curves(tmp_path):
    """Both joint-training figures are drawn, with one line per curve (paper: two flows, the two-timescale run and each
    setting; small: two flows, the first seed of each setting, the control); a malformed file becomes a note."""
    t = np.linspace(0.0, 2.5, 51).tolist()
    joint = [{"time": t, "loss": [0.1] * 51, "attention_rate": r, "learning_rate": 0.002} for r in (5.0, 20.0)]
    paper = {"flow": {"time": t, "loss": [0.09] * 51}, "sampled_flow": {"time": t, "loss": [0.091] * 51},
             "two_timescale": {"time": t, "loss": [0.095] * 51}, "joint": joint}
    _joint_evidence(tmp_path / "good", paper)
    build_report(tmp_path / "good", tmp_path / "good")
    figures = {p.name for p in (tmp_path / "good" / "figures").iterdir()}
    assert {"claim-joint-training-paper.png", "claim-joint-training-trajectories.png"} <= figures
    assert len(fig_joint.curves_figure(fig_joint.paper_curves(paper), "p").axes[0].lines) == 5
    small = json.loads((tmp_path / "good" / "joint-training" / "trajectories.json").read_text())
    assert [c.role for c in fig_joint.small_curves(small)] == ["flow", "sampled", "joint", "joint", "control"]
    broken = {**paper, "two_timescale": {"time": t, "loss": [0.1] * 3}}
    _joint_evidence(tmp_path / "bad", broken)
    build_report(tmp_path / "bad", tmp_path / "bad")
    assert "could not draw paper_comparison.json" in (tmp_path / "bad" / "index.html").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="two lists of the same length"):
        fig_joint.paper_curves(broken)
