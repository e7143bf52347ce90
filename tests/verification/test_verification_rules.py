"""Rules as data (verification/rules.py): one rule gives both the verdict and its text."""

from __future__ import annotations

import math

import pytest

from verification.claims import saddle_avoidance
from verification.records import Metric
from verification.registry import ALL_CHECKS, claim_module
from verification.rules import Claim, Rule, values_of


@pytest.mark.parametrize(
    "rule, text",
    [
        (Rule("gap", "<", 1e-5), "gap < 1e-05"),
        (Rule("gap", "<=", 0.25), "gap ≤ 0.25"),
        (Rule("events", ">=", 1), "events ≥ 1"),
        (Rule("count", "==", 0, label="runs stopped"), "runs stopped = 0"),
        (Rule("ratio", "within", 0.1, target=1.0), "|ratio − 1| ≤ 0.1"),
        (Rule("slope", "outside", 0.2, target=-1.0), "|slope + 1| > 0.2"),
        (Rule("exp_rms", "<", "poly_rms", scale=0.5), "exp_rms < 0.5 × poly_rms"),
        (Rule("poly_rms", "<", "exp_rms"), "poly_rms < exp_rms"),
    ],
)
def test_the_text_of_a_rule_is_written_from_its_bound(rule, text):
    assert rule.text() == text


@pytest.mark.parametrize(
    "rule, value, holds",
    [
        (Rule("x", "<", 1.0), 0.5, True),
        (Rule("x", "<", 1.0), 1.0, False),
        (Rule("x", "<=", 1.0), 1.0, True),
        (Rule("x", ">", 1.0), 1.0, False),
        (Rule("x", ">=", 1.0), 1.0, True),
        (Rule("x", "==", 0), 0.0, True),
        (Rule("x", "within", 0.1, target=2.0), 2.05, True),
        (Rule("x", "within", 0.1, target=2.0), 1.8, False),
        (Rule("x", "outside", 0.5, target=2.0), 1.4, True),
        (Rule("x", "outside", 0.5, target=2.0), 2.4, False),
        (Rule("x", ">", "y", scale=2.0), 7.0, True),
        (Rule("x", ">", "y", scale=2.0), 6.0, False),
    ],
)
def test_a_rule_holds_exactly_when_its_comparison_does(rule, value, holds):
    assert rule.holds({"x": value, "y": 3.0}) is holds


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
@pytest.mark.parametrize(
    "rule", [Rule("x", "<", 1.0), Rule("x", ">", 1.0), Rule("x", "within", 1e9, target=0.0), Rule("x", "outside", 0.0, target=0.0)]
)
def test_a_missing_or_non_finite_value_never_holds(rule, bad):
    values = {} if bad is None else {"x": bad}
    assert not rule.holds(values)
    # nor can it pass a claim, whichever side the rule is on
    assert Claim(passes=(rule,), fails=()).verdict(values) == "inconclusive"
    assert Claim(passes=(Rule("y", "==", 0),), fails=(rule,)).verdict({**values, "y": 0.0}) == "pass"


@pytest.mark.parametrize("bad", [math.nan, math.inf, None])
def test_a_missing_or_non_finite_named_bound_never_holds(bad):
    rule = Rule("x", "<", "y")
    assert not rule.holds({"x": 1.0} if bad is None else {"x": 1.0, "y": bad})


def test_the_verdict_is_pass_fail_or_inconclusive_by_the_rules():
    claim = Claim(passes=(Rule("x", "<=", 1.0),), fails=(Rule("x", ">", 10.0),))
    assert claim.verdict({"x": 0.5}) == "pass"
    assert claim.verdict({"x": 5.0}) == "inconclusive"
    assert claim.verdict({"x": 50.0}) == "fail"
    # a fail rule wins over pass rules that hold
    both = Claim(passes=(Rule("x", "<=", 1.0),), fails=(Rule("y", ">", 0),))
    assert both.verdict({"x": 0.5, "y": 1.0}) == "fail"


def test_the_threshold_joins_the_rules_with_context_and_note():
    claim = Claim(passes=(Rule("a", "<", 1.0), Rule("b", ">=", 2.0)), fails=(Rule("a", ">", 3.0),))
    assert claim.threshold() == "pass: a < 1 and b ≥ 2; fail: a > 3; inconclusive otherwise"
    assert claim.threshold(context="at t = 5", note="Reported: c") == (
        "at t = 5: pass: a < 1 and b ≥ 2; fail: a > 3; inconclusive otherwise. Reported: c"
    )


def test_malformed_rules_and_claims_are_refused():
    with pytest.raises(ValueError, match="op must be one of"):
        Rule("x", "≈", 1.0)
    with pytest.raises(ValueError, match="target goes with"):
        Rule("x", "within", 1.0)
    with pytest.raises(ValueError, match="target goes with"):
        Rule("x", "<", 1.0, target=0.0)
    with pytest.raises(ValueError, match="at least one pass rule"):
        Claim(passes=(), fails=(Rule("x", ">", 0),))


def test_values_of_reads_metrics_undefined_where_not_applicable_and_named_values():
    metrics = {"a": Metric(1.5), "b": Metric(2.0, applicable=False)}
    values = values_of(metrics, c=3)
    assert values["a"] == 1.5 and math.isnan(values["b"]) and values["c"] == 3.0
    with pytest.raises(ValueError, match="shadow metrics"):
        values_of(metrics, a=1.0)


def test_changing_a_claims_bound_changes_its_threshold_text_and_verdict(monkeypatch):
    """saddle-avoidance: its pass bound on the saddle start's displacement is STAY_TOL."""
    values = {"reached_fraction": 1.0, "saddle_displacement": 5e-10, "kick_events": 1.0, "kicked_gap": 1e-8, "saddle_loss": 0.3}
    before = saddle_avoidance.rules()
    assert "saddle_displacement ≤ 1e-10" in before.threshold()
    assert "saddle_displacement > 1e-07" in before.threshold()
    assert before.verdict(values) == "inconclusive"
    monkeypatch.setattr(saddle_avoidance, "STAY_TOL", 1e-9)
    after = saddle_avoidance.rules()
    assert "saddle_displacement ≤ 1e-09" in after.threshold()
    assert "saddle_displacement > 1e-06" in after.threshold()
    assert after.threshold() != before.threshold()
    assert after.verdict(values) == "pass"


def test_saddle_avoidance_requires_the_kick_to_fire_and_says_so():
    """Issue 13's example: ``events ≥ 1`` was judged but missing from the text."""
    claim = saddle_avoidance.rules()
    assert "kick_events ≥ 1" in claim.threshold()
    values = {"reached_fraction": 1.0, "saddle_displacement": 0.0, "kick_events": 0.0, "kicked_gap": 1e-8, "saddle_loss": 0.3}
    assert claim.verdict(values) == "inconclusive"
    assert claim.verdict({**values, "kick_events": 1.0}) == "pass"


@pytest.mark.parametrize("claim_id", list(ALL_CHECKS))
def test_every_claim_writes_its_threshold_from_its_rules(claim_id):
    claim = claim_module(claim_id).rules()
    text = claim.threshold()
    for rule in (*claim.passes, *claim.fails):
        assert rule.text() in text
