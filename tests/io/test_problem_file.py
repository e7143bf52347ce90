"""The problem file: defaults, relative paths, and one error naming each bad table or key."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from landscape import load_problem, parse_problem

TEACHER = {"activation": "erf", "c": [[1.0, 0.0], [0.0, 1.0]], "u": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]}


def test_defaults_follow_the_contract():
    spec = parse_problem({"teacher": TEACHER})
    assert spec.law.name == "gaussian" and spec.law.dim == 3
    assert spec.features == 2 and spec.activation.name == "erf" and not spec.bias
    assert spec.prompt_length == math.inf and spec.noise == 0.0 and spec.loss_star is None
    assert spec.method == "exact"


def test_bundled_example_loads_and_evaluates():
    root = Path(__file__).resolve().parents[2] / "landscape" / "examples"
    spec = load_problem(root / "teacher_student.toml")
    assert spec.features == 3 and spec.noise == 0.1
    assert spec.landscape().teacher.dim == 6


def test_relative_paths_resolve_from_the_toml_folder(tmp_path):
    folder = tmp_path / "sub"
    folder.mkdir()
    np.savez(folder / "teacher.npz", c=np.eye(2), u=np.eye(3)[:2])
    np.save(folder / "x.npy", np.random.default_rng(0).standard_normal((50, 3)))
    (folder / "p.toml").write_text(
        '[input]\nlaw = "empirical"\ndata = "x.npy"\n[teacher]\nfile = "teacher.npz"\n[task]\nprompt_length = 10\n'
    )
    spec = load_problem(folder / "p.toml")
    assert spec.law.name == "empirical" and spec.method == "monte_carlo" and spec.samples is None
    assert spec.landscape().expectation.samples == 50
    assert spec.prompt_length == 10


def test_other_commands_tables_are_accepted_and_kept():
    spec = parse_problem({"teacher": TEACHER, "init": {"particles": 5}, "dynamics": {}, "analysis": {"tol": 1.0}})
    assert spec.tables["init"] == {"particles": 5}


def test_bias_adds_a_column():
    spec = parse_problem({"teacher": TEACHER, "model": {"bias": True, "activation": "tanh"}})
    assert spec.landscape().input_dim == 4


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"teacher": TEACHER, "extra": {}}, r"unknown table \[extra\]"),
        ({"teacher": {**TEACHER, "colour": 1}}, r"unknown key\(s\) in \[teacher\]: colour"),
        ({"teacher": TEACHER, "task": {"noise": -1}}, r"\[task\] noise"),
        ({"teacher": TEACHER, "task": {"noise": "big"}}, r"\[task\] noise"),
        ({"teacher": TEACHER, "task": {"prompt_length": 0}}, r"prompt_length"),
        ({"teacher": TEACHER, "task": {"prompt_length": "infinite"}}, r"prompt_length"),
        ({"teacher": TEACHER, "model": {"activation": "swish"}}, r"unknown activation 'swish'"),
        ({"teacher": TEACHER, "model": {"features": 0}}, r"features"),
        ({"teacher": TEACHER, "model": {"bias": "yes"}}, r"bias"),
        ({"teacher": TEACHER, "input": {"law": "cauchy"}}, r"law"),
        ({"teacher": TEACHER, "input": {"dim": 4}}, r"dim = 4"),
        ({"teacher": TEACHER, "input": {"law": "sphere"}, "expectation": {"method": "exact"}}, r"needs law = \"gaussian\""),
        ({"teacher": {"c": [[1.0]], "u": [[1.0, 2.0], [3.0]]}}, r"rectangular"),
        ({"teacher": {"c": [[1.0]], "u": [[1.0, "a"]]}}, r"numbers"),
        ({"teacher": {"c": [[1.0]]}}, r"missing u"),
        ({}, r"needs a \[teacher\]"),
        ({"teacher": TEACHER, "expectation": {"samples": 0}}, r"samples"),
        ({"teacher": TEACHER, "expectation": {"singular_rtol": 2.0}}, r"singular_rtol"),
    ],
)
def test_bad_problems_raise_one_message_naming_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_problem(raw)


def test_invalid_toml_and_missing_file(tmp_path):
    (tmp_path / "bad.toml").write_text("[teacher\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_problem(tmp_path / "bad.toml")
    with pytest.raises(ValueError, match="does not exist"):
        load_problem(tmp_path / "none.toml")


def test_hermite_step_is_bounded_by_the_order_with_the_reason():
    from landscape.io.problem import max_hermite_step

    base = {"teacher": {"activation": "tanh", "c": [[1.0]], "u": [[1.0]]}}
    for order in (1, 16, 128, 1024):
        bound = max_hermite_step(order)
        parse_problem({**base, "expectation": {"hermite_order": order, "hermite_step": bound}})
        with pytest.raises(ValueError, match=r"hermite_step must be ≤ .* do not resolve the Hermite functions"):
            parse_problem({**base, "expectation": {"hermite_order": order, "hermite_step": 1.01 * bound}})
    with pytest.raises(ValueError, match="hermite_step"):
        parse_problem({**base, "expectation": {"hermite_step": 5.0}})
