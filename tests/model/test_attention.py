"""The linear self-attention layer on simulated prompts reproduces the landscape's losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import exact_landscape, random_measure, random_teacher

from landscape import GaussianLaw, LinearSelfAttention, get_activation, simulate_risk
from landscape.model.attention import embed_prompts


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
