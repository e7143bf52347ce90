"""The linear self-attention layer on simulated prompts reproduces the landscape's losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import exact_landscape, random_measure, random_teacher

from landscape import GaussianLaw, LinearSelfAttention, get_activation, simulate_risk
from landscape.model.attention import embed_prompts, indexed_prompts, sample_prompts


def test_layer_from_gamma_predicts_the_linear_attention_readout(rng):
    """ŷ = h_qᵀ Γ S with S = (1/N) Σ y_n h(x_n)."""
    gamma = torch.tensor(rng.standard_normal((3, 3)))
    h, y, hq = (torch.tensor(rng.standard_normal(s)) for s in [(4, 6, 3), (4, 6), (4, 3)])
    s = (y[:, :, None] * h).mean(1)
    expected = torch.einsum("bi,ij,bj->b", hq, gamma, s)
    torch.testing.assert_close(LinearSelfAttention.from_gamma(gamma).predict(embed_prompts(h, y, hq)), expected)


@pytest.mark.parametrize("prompt_length,noise", [(4, 0.3), (16, 0.0)])
def test_simulated_risk_at_gamma_star_equals_the_landscape_loss(prompt_length, noise):
    rng = np.random.default_rng(11)
    teacher = random_teacher(rng, neurons=3, k0=2, d=3)
    measure = random_measure(rng, m=4, k=2, d=3)
    landscape = exact_landscape(teacher, noise=noise, prompt_length=prompt_length, fourth_samples=400_000)
    a, w, p = measure.tensors()
    gamma = landscape.gamma_star(a, w, p)
    sim = simulate_risk(
        LinearSelfAttention.from_gamma(gamma), measure, teacher, get_activation("erf"), GaussianLaw(3),
        prompt_length, noise=noise, prompts=60_000, seed=2,
    )
    assert abs(sim.risk - float(landscape.loss(a, w, p))) < 4 * sim.stderr
    # Any other Γ: the risk equals L(µ, Γ), and is larger.
    other = gamma + 0.3 * torch.tensor(rng.standard_normal((2, 2)))
    sim_other = simulate_risk(
        LinearSelfAttention.from_gamma(other), measure, teacher, get_activation("erf"), GaussianLaw(3),
        prompt_length, noise=noise, prompts=60_000, seed=3,
    )
    assert abs(sim_other.risk - float(landscape.loss_with_gamma(a, w, p, other))) < 4 * sim_other.stderr
    assert float(landscape.loss_with_gamma(a, w, p, other)) > float(landscape.loss(a, w, p))


def test_simulation_rejects_infinite_prompts(rng):
    teacher = random_teacher(rng, 2, 2, 3)
    with pytest.raises(ValueError, match="prompt_length"):
        simulate_risk(LinearSelfAttention(2), random_measure(rng, 2, 2, 3), teacher, get_activation("erf"), GaussianLaw(3), float("inf"))


def test_predict_is_the_query_column_of_the_whole_layer(rng):
    """:meth:`predict` (the query's column only, O(N k²)) equals the bottom-right entry of :meth:`forward` (the whole
    (N, N+1) score matrix) for a generic W, every entry that reaches the prediction nonzero, and so do its gradients."""
    layer = LinearSelfAttention(3)
    with torch.no_grad():
        layer.w_kq.copy_(torch.tensor(rng.standard_normal((4, 4))))
        layer.w_pv.copy_(torch.tensor(rng.standard_normal((4, 4))))
    z = torch.tensor(rng.standard_normal((5, 4, 8)))
    z[:, -1, -1] = 0.0  # the query's hidden label (embed_prompts)
    fast, full = layer.predict(z), layer.forward(z)[..., -1, -1]
    torch.testing.assert_close(fast, full, rtol=1e-12, atol=1e-12)
    g_fast = torch.autograd.grad(fast.square().sum(), (layer.w_kq, layer.w_pv))
    g_full = torch.autograd.grad(full.square().sum(), (layer.w_kq, layer.w_pv))
    for a, b in zip(g_fast, g_full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert float(g_fast[1][-1].abs().min()) > 0


def test_indexed_prompts_depend_on_their_index_only(rng):
    """Prompt i of a fixed set is the same whichever batch it is drawn in and in whatever order, equals
    :func:`sample_prompts` of one prompt from the i-th child of the seed, and two indices or two seeds differ."""
    teacher = random_teacher(rng, neurons=2, k0=2, d=3)
    law, seed = GaussianLaw(3), np.random.SeedSequence(5).spawn(2)[0]

    def draw(indices, seq=seed):
        return indexed_prompts(seq, np.asarray(indices), 7, law, teacher, 0.2, torch.float64, "cpu")

    x, y = draw([3, 9000, 17])
    x2, y2 = draw([17, 3])
    assert x.shape == (3, 8, 3) and y.shape == (3, 8)
    assert torch.equal(x[0], x2[1]) and torch.equal(y[2], y2[0]) and torch.equal(x[2], x2[0])
    child = np.random.default_rng(seed.spawn(10_000)[9000])
    xs, ys = sample_prompts(child, 1, 7, law, teacher, 0.2, torch.float64, "cpu")
    assert torch.equal(xs[0], x[1]) and torch.equal(ys[0], y[1])
    assert not torch.equal(x[0], x[2]) and not torch.equal(y[0], y[2])
    x3, _ = draw([3], np.random.SeedSequence(6).spawn(2)[0])
    assert not torch.equal(x3[0], x[0])
