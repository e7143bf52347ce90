"""Performance contracts of the hot paths (issue 7): bounded memory, blocked = plain, device-agnostic.

The benchmark suite itself is ``python -m benchmarks`` (not a test).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import orthogonal_teacher, random_measure

import landscape.model.expectations as expectations
from landscape import SampledExpectation, get_activation
from landscape.landscape import AttentionLandscape
from landscape.second_order.hessian import hessian_vector_product


def _loss_and_grad(landscape, a, w, p):
    a = a.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    loss = landscape.loss(a, w, p)
    return (loss.detach(), *torch.autograd.grad(loss, (a, w)))


def test_blocked_and_checkpointed_sampled_moments_equal_the_plain_ones(rng, monkeypatch):
    """Blocks of rows and particles, recomputed in the backward pass, change nothing beyond rounding."""
    teacher = orthogonal_teacher(3, 6)
    x = rng.standard_normal((3000, 6))
    mu = random_measure(rng, 50, 3, 6)
    a, w, p = mu.tensors(torch.float64, "cpu")
    act = get_activation("erf")
    plain = AttentionLandscape(teacher, SampledExpectation(teacher, act, x))
    reference = _loss_and_grad(plain, a, w, p)
    monkeypatch.setattr(expectations, "CHECKPOINT_ELEMENTS", 1000)
    blocked = AttentionLandscape(teacher, SampledExpectation(teacher, act, x, chunk_rows=4096, block_elements=7 * 256))
    assert blocked.expectation._checkpointed(w.requires_grad_(True), a, p)
    w.requires_grad_(False)
    for got, want in zip(_loss_and_grad(blocked, a, w, p), reference, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    probes = blocked.expectation.probe_moments(w[:7], a, w, p, fourth=True)
    want = plain.expectation.probe_moments(w[:7], a, w, p, fourth=True)
    for got_t, want_t in zip(probes, want, strict=True):
        torch.testing.assert_close(got_t, want_t, rtol=1e-12, atol=1e-14)


_LARGE_M_SCRIPT = textwrap.dedent(
    """
    import resource, sys, time
    import numpy as np, torch
    from landscape import AttentionLandscape, SampledExpectation, Teacher, get_activation
    torch.set_num_threads(1)
    m, n, d, k = 100_000, 4_000, 20, 5
    rng = np.random.default_rng(0)
    teacher = Teacher(np.eye(k), np.eye(d)[:k], "erf")
    exp = SampledExpectation(teacher, get_activation("erf"), rng.standard_normal((n, d)))
    landscape = AttentionLandscape(teacher, exp)
    a = torch.as_tensor(rng.standard_normal((m, k))).requires_grad_(True)
    w = torch.as_tensor(rng.standard_normal((m, d)) / d**0.5).requires_grad_(True)
    p = torch.full((m,), 1.0 / m, dtype=torch.float64)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.process_time()
    loss = landscape.loss(a, w, p)
    ga, gw = torch.autograd.grad(loss, (a, w))
    ok = bool(torch.isfinite(loss)) and bool(torch.isfinite(gw).all()) and bool(torch.isfinite(ga).all())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(ok, before, peak, time.process_time() - start)
    """
)

#: bound on the peak resident memory added by one loss + gradient at M = 1e5, n = 4000, d = 20.
#: Without blocking, the activations stored for the backward pass alone take 2·n·M·8 B ≈ 6.4 GB;
#: measured here (2026-11-22): +0.65 to +1.45 GiB depending on the allocator's mood, 14–35 CPU s;
#: 2026-11-30: +2.02 GiB once in a full suite run on a loaded machine. The bound stays well below
#: the unblocked 6.4 GB, so dropping the blocking still fails the test.
LARGE_M_MEMORY_BOUND_MIB = 3072


@pytest.mark.slow
def test_sampled_loss_and_gradient_at_1e5_particles_stay_in_bounded_memory():
    """M = 10⁵ sampled evaluation of L and ∇L: peak RSS grows by less than the stated bound."""
    out = subprocess.run([sys.executable, "-c", _LARGE_M_SCRIPT], capture_output=True, text=True, timeout=900, check=True)
    ok, before, peak, _seconds = out.stdout.split()
    assert ok == "True"
    assert float(peak) - float(before) < LARGE_M_MEMORY_BOUND_MIB, out.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("method", ["exact", "sampled"])
def test_cuda_path_matches_cpu(method, rng):
    """Loss, gradient and an HVP on CUDA equal the CPU ones (no hard-coded CPU tensors on the way)."""
    teacher = orthogonal_teacher(3, 6)
    mu = random_measure(rng, 12, 3, 6)
    x = rng.standard_normal((2000, 6))
    results = []
    for device in ("cpu", "cuda"):
        act = get_activation("erf")
        if method == "exact":
            backend = expectations.ExactGaussianExpectation(teacher, act, device=device)
        else:
            backend = SampledExpectation(teacher, act, x, device=device)
        landscape = AttentionLandscape(teacher, backend)
        a, w, p = mu.tensors(torch.float64, device)
        loss, ga, gw = _loss_and_grad(landscape, a, w, p)
        hvp = hessian_vector_product(landscape, mu)
        v = torch.as_tensor(np.linspace(-1, 1, hvp.size), device=device)
        assert hvp(v).device.type == device
        results.append([t.cpu() for t in (loss, ga, gw, hvp(v))])
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
