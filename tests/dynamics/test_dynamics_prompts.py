"""Tests of :mod:`landscape.dynamics.prompts`: the real model trained by SGD on sampled prompts.

The SGD gradient against autograd of an independently written empirical loss, the mean-field
time scaling against the landscape's velocity, the empirical prompt loss against
``L_N(µ, Γ)``, the ``[prompts]`` validation, bitwise resume, and a run via the CLI.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ERF_TEACHER_TOML

from landscape import ParticleMeasure
from landscape.cli import main
from landscape.dynamics import prompts as prompts_module
from landscape.dynamics import train
from landscape.dynamics.config import DynamicsConfig, parse_dynamics, parse_init, parse_prompts, prompts_table
from landscape.dynamics.initialisation import initial_measure
from landscape.dynamics.prompts import COLUMNS, PromptTrainer, simulate_prompts, step_limit
from landscape.dynamics.rundir import RunDirectory
from landscape.dynamics.trajectory import read_trajectory
from landscape.io.problem import parse_problem
from landscape.landscape import PrecisionWarning
from landscape.model.attention import indexed_prompts, mlp_features

TEACHER = {"teacher": {"activation": "erf", "c": [[1.0, 0.0], [0.0, 1.0]], "u": [[1.5, 0.0, 0.0], [0.0, 1.5, 0.0]]}}
DYN = DynamicsConfig(scheme="prompts", record_every=1)


def _spec(length: int = 5, fourth: int = 200_000):
    return parse_problem({**TEACHER, "task": {"noise": 0.1, "prompt_length": length}, "expectation": {"fourth_moment_samples": fourth}})


def _measure(m: int = 3, seed: int = 1) -> ParticleMeasure:
    rng = np.random.default_rng(seed)
    return ParticleMeasure(2.0 * rng.standard_normal((m, 2)), rng.standard_normal((m, 3)) / math.sqrt(3))


def _reference_losses(a, w, p, w_kq, w_pv, x, y):
    """``½(y_q − ŷ)²`` with ``ŷ`` written out from the blocks of W (LinearSelfAttention.gamma_of's docstring)."""
    k = a.shape[1]
    h = torch.special.erf(x @ w.T) @ (p[:, None] * a)  # (B, N+1, k)
    hp, hq, yp = h[:, :-1], h[:, -1], y[:, :-1]
    n = yp.shape[1]
    gram = torch.einsum("bni,bnj->bij", hp, hp) / n
    s = torch.einsum("bn,bni->bi", yp, hp) / n
    y2 = (yp * yp).mean(1)
    big_b, b_row, v_h, v_y = w_kq[:k, :k], w_kq[k, :k], w_pv[k, :k], w_pv[k, k]
    bhq = hq @ big_b.T
    bq = hq @ b_row
    pred = torch.einsum("i,bij,bj->b", v_h, gram, bhq) + (s @ v_h) * bq + v_y * ((s * bhq).sum(1) + y2 * bq)
    return 0.5 * (y[:, -1] - pred) ** 2


@pytest.mark.parametrize("chunk", [7, 2])
def test_sgd_gradient_and_step_against_autograd_of_the_empirical_loss(monkeypatch, chunk):
    """The trainer's loss and gradients (through the embedding Z) equal autograd of the written-out
    prediction at a W with every entry nonzero, with the batch of 7 prompts in one chunk or in chunks of 2
    (the last one short); the step moves particle i by δt/p_i times its gradient."""
    monkeypatch.setattr(prompts_module, "CHUNK_ENTRIES", chunk * 6 * 3)  # N + 1 = 6 inputs, M = 3 neurons
    assert prompts_module.chunk_prompts(6, 3) == chunk
    spec = _spec(fourth=1000)
    prompts = parse_prompts({"batch": 7, "learning_rate": 0.05, "attention_rate": 3.0}, 5)
    trainer = PromptTrainer.fresh(spec, _measure(), prompts, DYN)
    gen = torch.Generator().manual_seed(4)
    s = trainer.state
    s.w_kq, s.w_pv = torch.randn(3, 3, generator=gen, dtype=torch.float64), torch.randn(3, 3, generator=gen, dtype=torch.float64)
    x, y = trainer.batch()
    losses, grads = trainer.losses_and_gradients(x, y)
    leaves = [t.clone().requires_grad_(True) for t in (s.a, s.w, s.w_kq, s.w_pv)]
    reference = _reference_losses(leaves[0], leaves[1], s.p, leaves[2], leaves[3], x, y)
    expected = torch.autograd.grad(reference.mean(), leaves)
    torch.testing.assert_close(losses, reference.detach(), rtol=1e-12, atol=1e-14)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)
    before = [t.clone() for t in (s.a, s.w, s.w_kq, s.w_pv)]
    trainer.update(grads)
    m = s.p.numel()
    torch.testing.assert_close(s.a, before[0] - 0.05 * m * grads[0], rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(s.w, before[1] - 0.05 * m * grads[1], rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(s.w_kq, before[2] - 0.15 * grads[2], rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(s.w_pv, before[3] - 0.15 * grads[3], rtol=1e-14, atol=1e-15)
    assert (s.step, s.time) == (1, 0.05)


def test_scaled_particle_gradient_is_the_wasserstein_velocity_on_many_prompts():
    """At W realising Γ*(µ), M ∂L̂/∂θ_i over many fresh prompts estimates ∇_θ δL_N/δµ(θ_i) (docs/theory.md §5):
    the mean-field time scaling. Relative error within sampling noise (≈ 1/√B), far from a factor M off."""
    spec = _spec(fourth=200_000)
    prompts = parse_prompts({"batch": 40_000}, 5)
    trainer = PromptTrainer.fresh(spec, _measure(), prompts, DYN)
    _, (ga, gw, _, _) = trainer.losses_and_gradients(*trainer.batch())
    s = trainer.state
    scaled = torch.cat([ga, gw], dim=1) / s.p[:, None]
    velocity = trainer.landscape.velocity(s.a, s.w, s.p)
    error = float(torch.linalg.norm(scaled - velocity) / torch.linalg.norm(velocity))
    assert error < 0.1, error


def test_empirical_prompt_loss_converges_to_the_exact_loss():
    """At fixed parameters the batch's prompt loss lies within 4 standard errors of L_N(µ, Γ(W)) (the row's
    ``energy``), and its standard error falls like 1/√B; W is off Γ* so that L(µ, Γ) ≠ L_N(µ)."""
    spec = _spec(fourth=200_000)
    errors = []
    for batch in (1_000, 16_000):
        trainer = PromptTrainer.fresh(spec, _measure(), parse_prompts({"batch": batch, "seed": 3}, 5), DYN)
        trainer.state.w_kq = 0.3 * trainer.state.w_kq
        losses, _ = trainer.losses_and_gradients(*trainer.batch())
        row = trainer.row(losses)
        assert row["energy"] > 1.2 * row["loss"]  # Γ(W) is visibly not Γ*
        assert abs(row["prompt_loss"] - row["energy"]) < 4 * row["prompt_stderr"], row
        errors.append(row["prompt_stderr"])
    assert errors[1] == pytest.approx(errors[0] / 4, rel=0.25)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"batch": 1}, r"\[prompts\] batch must be an integer ≥ 2"),
        ({"steps": 3, "time": 1.0}, r"\[prompts\] give either steps or time"),
        ({"learning_rate": 0}, r"\[prompts\] learning_rate must be > 0"),
        ({"attention_rate": -1}, r"\[prompts\] attention_rate must be ≥ 0"),
        ({"attention_rate": "fast"}, r"\[prompts\] attention_rate must be a number ≥ 0 or \"inf\""),
        ({"train_prompts": 10, "batch": 64}, r"\[prompts\] train_prompts must be an integer ≥ 64"),
        ({"train_prompts": "all"}, r"\[prompts\] train_prompts must be \"online\" or an integer"),
        ({"precision": "float16"}, r"\[prompts\] precision must be one of"),
        ({"length": 7}, r"\[prompts\] length = 7 contradicts \[task\] prompt_length = 5"),
        ({"size": 3}, r"unknown key\(s\) in \[prompts\]: size"),
    ],
)
def test_prompts_table_validation(table, message):
    with pytest.raises(ValueError, match=message):
        parse_prompts(table, 5)


def test_prompts_tables_resolve_and_parse_back():
    with pytest.raises(ValueError, match=r"\[prompts\] length is required"):
        parse_prompts({}, math.inf)
    config = parse_prompts({"time": 0.5, "train_prompts": 100, "length": 9}, math.inf)
    assert config.total_steps == 50 and parse_prompts(prompts_table(config), 9) == config
    limit = parse_prompts({"attention_rate": "inf"}, 9)
    assert math.isinf(limit.attention_rate) and prompts_table(limit)["attention_rate"] == "inf"
    assert parse_prompts(prompts_table(limit), 9) == limit
    assert parse_prompts({"attention_rate": math.inf}, 9) == limit  # TOML's inf literal
    dyn = parse_dynamics({"scheme": "prompts", "record_every": 3})
    assert parse_dynamics(dyn.to_table()) == dyn and "steps" not in dyn.to_table()
    assert "scheme" not in parse_dynamics({}).to_table()  # a landscape run's config.toml is unchanged
    with pytest.raises(ValueError, match=r'\[dynamics\] step_size is not used with scheme = "prompts"'):
        parse_dynamics({"scheme": "prompts", "step_size": 0.1})


def test_float32_warns_and_trains():
    prompts = parse_prompts({"batch": 8, "steps": 3, "precision": "float32"}, 5)
    with pytest.warns(PrecisionWarning, match="float32"):
        run = simulate_prompts(_spec(fourth=1000), _measure(), prompts, DYN)
    assert run.result.completed and run.final["a"].dtype == np.float64 and len(run) == 4


PROBLEM_BODY = """[task]
noise = 0.1
prompt_length = 6
[expectation]
fourth_moment_samples = 2000
[init]
particles = 4
scale = 3.0
seed = 4
[dynamics]
scheme = "prompts"
record_every = 3
checkpoint_every = 5
snapshot_every = 10
[prompts]
batch = 8
steps = 24
learning_rate = 0.005
attention_rate = 2.0
seed = 7
"""


@pytest.mark.parametrize(("train_prompts", "rate"), [("online", "2.0"), (40, "2.0"), (40, '"inf"')])
def test_interrupted_prompts_run_resumes_bitwise(tmp_path, monkeypatch, train_prompts, rate):
    """An exception in step 13 (after the checkpoint of step 10), then ``resume``: final.npz, the trajectory
    and the checkpoint are the bytes of an uninterrupted run (the generator's state is checkpointed), also in
    the two-timescale limit (``attention_rate = "inf"``, through the problem file and the run's config.toml)."""
    body = PROBLEM_BODY.replace("attention_rate = 2.0", f"attention_rate = {rate}")
    body += f"train_prompts = {train_prompts}\n" if train_prompts != "online" else ""
    problem = tmp_path / "p.toml"
    problem.write_text(ERF_TEACHER_TOML + body)
    assert train(problem, tmp_path / "reference").completed
    real_update = PromptTrainer.update

    def interrupted(self, grads):
        if self.state.step == 12:
            raise KeyboardInterrupt
        real_update(self, grads)

    monkeypatch.setattr(PromptTrainer, "update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(problem, tmp_path / "run")
    monkeypatch.setattr(PromptTrainer, "update", real_update)
    run = tmp_path / "run"
    assert RunDirectory(run, COLUMNS).load_checkpoint().step == 10 and not (run / "final.npz").exists()
    resumed = train(problem, run, resume=True)
    assert resumed.completed and resumed.steps == 24 and resumed.evaluations == 14
    for name in ("final.npz", "trajectory.csv", "checkpoint.npz", "snapshots/step_00000020.npz"):
        assert (run / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    lag = read_trajectory(run)["gamma_distance"]
    assert (np.max(lag) < 1e-12) == (rate == '"inf"'), lag  # the limit realises Γ*(µ) on every row, a finite rate lags


def test_short_cli_run_writes_the_prompt_columns(tmp_path, capsys):
    """``landscape train`` with scheme = "prompts": the run directory's trajectory has :data:`COLUMNS`, its rows are
    bit for bit those of :func:`simulate_prompts`, final.npz holds the trained attention; a stray [prompts] is refused."""
    problem = tmp_path / "p.toml"
    problem.write_text(ERF_TEACHER_TOML + PROBLEM_BODY)
    assert main(["train", "--problem", str(problem), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "completed 24 SGD steps" in capsys.readouterr().out
    header = (tmp_path / "run" / "trajectory.csv").read_text().splitlines()[0]
    assert header == ",".join(COLUMNS)
    trajectory = read_trajectory(tmp_path / "run")
    assert list(trajectory["step"]) == [0, 3, 6, 9, 12, 15, 18, 21, 24]
    spec = parse_problem({**TEACHER, "task": {"noise": 0.1, "prompt_length": 6}, "expectation": {"fourth_moment_samples": 2000}})
    start = initial_measure(parse_init({"particles": 4, "scale": 3.0, "seed": 4}), spec.landscape(), 2)
    table = {"batch": 8, "steps": 24, "learning_rate": 0.005, "attention_rate": 2.0, "seed": 7}
    memory = simulate_prompts(spec, start, parse_prompts(table, 6), parse_dynamics({"scheme": "prompts", "record_every": 3}))
    for name in COLUMNS:
        assert trajectory[name].tobytes() == memory[name].tobytes(), name
    final = np.load(tmp_path / "run" / "final.npz")
    assert final["gamma"].tobytes() == memory.final["gamma"].tobytes() and final["w_kq"].shape == (3, 3)
    assert trajectory["gamma_distance"][0] == 0.0 and trajectory["gamma_distance"][-1] > 0.0
    stray = tmp_path / "stray.toml"
    stray.write_text(ERF_TEACHER_TOML + "[prompts]\nbatch = 4\n[dynamics]\nsteps = 2\n")
    assert main(["train", "--problem", str(stray), "--out", str(tmp_path / "stray")]) == 2
    assert '[prompts] is only used with [dynamics] scheme = "prompts"' in capsys.readouterr().err


def test_broken_attention_sign_diverges(monkeypatch):
    """A gradient ascent on W (the can-fail of the joint-training claim) ends the run as data, not a crash."""
    monkeypatch.setattr(prompts_module.PromptTrainer, "update_attention", lambda self, kq, pv, gk, gp: (kq + gk, pv + gp))
    run = simulate_prompts(_spec(fourth=1000), _measure(), parse_prompts({"batch": 8, "steps": 400, "learning_rate": 0.05}, 5),
                           DynamicsConfig(scheme="prompts", record_every=50))
    assert run.result.status in ("nonfinite", "singular") and run.final is None


def test_features_match_the_measure():
    """:func:`mlp_features` is ``h_µ`` of docs/theory.md §2: linear in µ (two halves of a measure add up)."""
    mu = _measure(4)
    a, w, p = mu.tensors(torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    act = _spec().activation
    whole = mlp_features(x, a, w, p, act)
    halves = mlp_features(x, a[:2], w[:2], p[:2], act) + mlp_features(x, a[2:], w[2:], p[2:], act)
    torch.testing.assert_close(whole, halves, rtol=1e-14, atol=1e-15)


def test_fixed_training_set_is_regenerated_per_index():
    """A fixed set is never stored (a set of 10⁹ prompts starts at once): each batch is the prompts of the indices the
    run's generator draws (without replacement), each regenerated from its index, so a prompt drawn twice is the same."""
    spec = _spec(fourth=1000)
    config = parse_prompts({"batch": 6, "steps": 2, "train_prompts": 10**9, "seed": 3}, 5)
    trainer = PromptTrainer.fresh(spec, _measure(), config, DYN)
    rng = np.random.default_rng(np.random.SeedSequence(3).spawn(2)[1])
    seed = np.random.SeedSequence(3).spawn(2)[0]
    for _ in range(2):
        index = rng.choice(10**9, 6, replace=False)
        assert len(set(index.tolist())) == 6
        x, y = trainer.batch()
        xr, yr = indexed_prompts(seed, index, 5, spec.law, spec.teacher, spec.noise, torch.float64, "cpu")
        assert torch.equal(x, xr) and torch.equal(y, yr)
    again, _ = indexed_prompts(seed, index[::-1].copy(), 5, spec.law, spec.teacher, spec.noise, torch.float64, "cpu")
    assert torch.equal(again.flip(0), x) and not torch.equal(x[0], x[1])


def test_step_limit_against_the_dense_hessian():
    """:func:`step_limit`'s Lanczos curvature is the largest eigenvalue of the dense ``P^{-1/2}∇²F P^{-1/2}`` (F the loss
    at fixed Γ = Γ*(µ), unequal weights p), and its ``dΓ*/dt`` a centred difference of Γ* along the flow."""
    spec = _spec(fourth=2000)
    base = _measure(4, seed=3)
    measure = ParticleMeasure(base.a, base.w, np.array([0.1, 0.2, 0.3, 0.4]))
    land = spec.landscape()
    limit = step_limit(land, measure, tol=1e-10)
    a, w, p = measure.tensors(torch.float64)
    gamma = land.gamma_star(a, w, p)
    theta = torch.cat([a, w], dim=1)
    hessian = torch.autograd.functional.hessian(lambda t: land.loss_with_gamma(t[:, :2], t[:, 2:], p, gamma), theta)
    scale = p.rsqrt().repeat_interleave(theta.shape[1])
    dense = torch.linalg.eigvalsh(scale[:, None] * hessian.reshape(theta.numel(), -1) * scale[None, :])
    assert limit.curvature == pytest.approx(float(dense[-1]), rel=1e-8) and dense[-1] > 0
    assert limit.step == pytest.approx(2.0 / float(dense[-1]), rel=1e-8)
    velocity, eps = land.velocity(a, w, p), 1e-6
    ahead, behind = (land.gamma_star(*(theta - s * eps * velocity).split([2, 3], dim=1), p) for s in (1, -1))
    assert limit.gamma_rate == pytest.approx(float(torch.linalg.matrix_norm(ahead - behind)) / (2 * eps), rel=1e-6)
    assert limit.gamma_norm == pytest.approx(float(torch.linalg.matrix_norm(gamma)), rel=1e-12)
    assert limit.gamma_time == limit.gamma_norm / limit.gamma_rate


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_run_matches_the_cpu_run():
    """The same float64 run on CUDA and on the CPU: every column agrees to rounding (the CUDA path
    once failed at its first row: the attention layer was built on the CPU)."""
    spec = _spec(length=8, fourth=20_000)
    runs = {}
    for device in ("cpu", "cuda"):
        table = {"batch": 16, "steps": 6, "learning_rate": 0.01, "attention_rate": 2.0, "train_prompts": 50, "seed": 3, "device": device}
        runs[device] = simulate_prompts(spec, _measure(), parse_prompts(table, spec.prompt_length), DYN)
        assert runs[device].result.status == "completed"
    for column in COLUMNS:
        np.testing.assert_allclose(runs["cuda"][column], runs["cpu"][column], rtol=1e-9, atol=1e-12, err_msg=column)


def test_two_timescale_limit_realises_gamma_star_on_the_same_batches():
    """``attention_rate = "inf"``: after every step W realises Γ*(µ) of the new neurons (row's ‖Γ(W) − Γ*‖ at
    rounding, against an independent ``gamma_star`` of the final neurons), the batches are those of a finite rate
    with the same seed (the first row's prompt losses agree bit for bit), and a large finite rate comes close."""
    spec, start = _spec(fourth=2000), _measure()
    table = {"batch": 16, "steps": 30, "learning_rate": 0.01, "seed": 3}
    limit = simulate_prompts(spec, start, parse_prompts({**table, "attention_rate": "inf"}, 5), DYN)
    assert limit.result.completed and np.max(limit["gamma_distance"]) < 1e-12
    landscape = prompts_module.prompt_landscape(spec, parse_prompts(table, 5))
    a, w, p = (torch.as_tensor(limit.final[n]) for n in "awp")
    gamma = landscape.gamma_star(a, w, p).numpy()
    np.testing.assert_allclose(limit.final["gamma"], gamma, rtol=1e-12, atol=1e-14)
    slow, fast = (simulate_prompts(spec, start, parse_prompts({**table, "attention_rate": r}, 5), DYN) for r in (1.0, 3.0))
    assert slow["prompt_loss"][0] == limit["prompt_loss"][0]
    gaps = [np.max(np.abs(run["loss"] - limit["loss"])) for run in (slow, fast)]
    assert gaps[1] < 0.5 * gaps[0], gaps  # can fail: a W update that ignores the rate
    assert np.max(fast["gamma_distance"]) > 1e-6  # a finite rate lags


def test_two_timescale_limit_stops_as_data_on_non_finite_neurons():
    """Non-finite neurons give the run's ``nonfinite`` status at the W update of the limit, not a LinAlgError."""
    trainer = PromptTrainer.fresh(_spec(fourth=1000), _measure(), parse_prompts({"batch": 4, "attention_rate": "inf"}, 5), DYN)
    trainer.state.a = trainer.state.a * math.nan
    with pytest.raises(prompts_module._Stop, match="no longer finite") as stop:
        trainer.two_timescale_attention(trainer.state.w_pv)
    assert stop.value.status == "nonfinite"
