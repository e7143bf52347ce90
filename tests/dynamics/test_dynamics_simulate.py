"""``simulate`` (the flow in memory) against ``train`` (its file layer): the same rows, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ERF_TEACHER_TOML, KICKED_RUN_TOML

from landscape.dynamics import COLUMNS, Observer, read_trajectory, simulate, train
from landscape.dynamics.initialisation import initial_measure
from landscape.dynamics.train import read_run_config, resolved_config

#: a finite timescale ratio (Γ in the state), an adaptive pair and Wasserstein–Fisher–Rao weights.
ADAPTIVE_RUN_TOML = """[init]
particles = 5
seed = 2
[dynamics]
time = 0.3
step_size = 0.05
integrator = "dopri5"
timescale_ratio = 2.0
record_every = 2
checkpoint_every = 3
[dynamics.birth_death]
kind = "wfr"
rate = 0.5
"""


class _Counter(Observer):
    def __init__(self) -> None:
        self.rows = 0
        self.steps = 0

    def begin(self, state, info, rng, row) -> None:
        self.rows += 1

    def row(self, row) -> None:
        self.rows += 1

    def step(self, state, info, rng, row, checkpoint_due) -> None:
        self.steps += 1


@pytest.mark.parametrize(
    "run_toml",
    [KICKED_RUN_TOML.format(steps=25, checkpoint_every=7, snapshot_every=0), ADAPTIVE_RUN_TOML],
    ids=["kicked-stochastic-rk4", "dopri5-finite-eta-wfr"],
)
def test_simulate_returns_what_train_writes_bit_for_bit(tmp_path, run_toml):
    problem = tmp_path / "problem.toml"
    problem.write_text(ERF_TEACHER_TOML + run_toml, encoding="utf-8")
    written = train(problem, tmp_path / "run")
    assert written.completed
    tables, spec, init, dynamics = resolved_config(problem)
    landscape = spec.landscape()
    counter = _Counter()
    memory = simulate(landscape, initial_measure(init, landscape, spec.features), dynamics, counter)
    disk = read_trajectory(tmp_path / "run")
    assert set(memory.columns) == set(disk.columns) == set(COLUMNS) - {"events"}
    for name in COLUMNS[:-1]:
        assert memory[name].dtype == disk[name].dtype == np.float64, name
        assert memory[name].tobytes() == disk[name].tobytes(), name
    assert memory.events == disk.events and len(memory) == len(disk) == counter.rows
    assert counter.steps == written.steps == memory.result.steps
    with np.load(tmp_path / "run" / "final.npz", allow_pickle=False) as archive:
        final = {name: archive[name] for name in archive.files}
    assert set(memory.final) == set(final)
    for name, array in final.items():
        assert memory.final[name].tobytes() == array.tobytes(), name
    assert (memory.result.status, memory.result.loss, memory.result.evaluations) == (written.status, written.loss, written.evaluations)
    spec_back, dynamics_back = read_run_config(tmp_path / "run")  # the run's config.toml, strictly
    assert dynamics_back == dynamics and (spec_back.noise, spec_back.features) == (spec.noise, spec.features)
    again = simulate(landscape, initial_measure(init, landscape, spec.features), tables["dynamics"])  # a [dynamics] table
    assert all(again[name].tobytes() == memory[name].tobytes() for name in COLUMNS[:-1])


def test_kicked_run_records_its_events_with_their_times(tmp_path):
    problem = tmp_path / "problem.toml"
    problem.write_text(ERF_TEACHER_TOML + KICKED_RUN_TOML.format(steps=25, checkpoint_every=7, snapshot_every=0), encoding="utf-8")
    _, spec, init, dynamics = resolved_config(problem)
    landscape = spec.landscape()
    trajectory = simulate(landscape, initial_measure(init, landscape, spec.features), dynamics)
    times = trajectory.event_times()
    assert times and {event.split(":")[0] for _, event in times} <= {"kick", "death", "birth"}
    rows = {float(t) for t, cell in zip(trajectory["time"], trajectory.events) if cell}
    assert {t for t, _ in times} == rows


def test_simulate_refuses_bad_settings_and_unstartable_measures(tmp_path):
    problem = tmp_path / "problem.toml"
    problem.write_text(ERF_TEACHER_TOML + ADAPTIVE_RUN_TOML, encoding="utf-8")
    _, spec, init, _ = resolved_config(problem)
    landscape = spec.landscape()
    measure = initial_measure(init, landscape, spec.features)
    with pytest.raises(ValueError, match="integrator"):
        simulate(landscape, measure, {"integrator": "leapfrog"})
    collapsed = type(measure)(np.zeros_like(measure.a), measure.w)  # Σ_µµ = 0
    with pytest.raises(ValueError, match="cannot start a run"):
        simulate(landscape, collapsed, {"steps": 3})
