"""The fused (numba) Mehler series against the torch reference path and against finite differences."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import forward_ad
from torch.autograd.gradcheck import GradcheckError

from landscape.model import fused_series
from landscape.model.fused_series import _Contract, _Series, contract, contract_torch, fused_applies, reference_kernels, series, series_torch
from landscape.model.kernels import mehler_series

ORDERS = (1, 2, 8, 32)
SHAPES = ((1, 1), (5, 3), (4, 7))
RTOL = 1e-13


def _inputs(m1: int, m2: int, order: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ρ uniform in [−1, 1] (M1, M2), coefficients (M1, T+1), (M2, T+1) decaying like the Hermite ones."""
    gen = torch.Generator().manual_seed(seed)
    decay = 0.8 ** torch.arange(order + 1, dtype=torch.float64)
    rho = 2.0 * torch.rand(m1, m2, generator=gen, dtype=torch.float64) - 1.0
    alpha = torch.randn(m1, order + 1, generator=gen, dtype=torch.float64) * decay
    beta = torch.randn(m2, order + 1, generator=gen, dtype=torch.float64) * decay
    return rho, alpha, beta


def _close(fast: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal to rounding: max error below RTOL times the reference's largest entry."""
    fast, ref = fast.detach(), ref.detach()
    scale = float(ref.abs().max()) or 1.0
    assert float((fast - ref).abs().max()) <= RTOL * scale, (float((fast - ref).abs().max()), scale)


def _loss(rho, alpha, beta):
    """A scalar with nonzero second derivatives in every input: Σ κ² weighted by ρ."""
    kappa = mehler_series(rho, alpha, beta)
    return (kappa * kappa * (1.0 + rho)).sum()


def _both_paths(fn, *args):
    """``fn(*args)`` on the fast path, then on the reference path (a list of tensors each)."""
    fast = fn(*args)
    with reference_kernels():
        ref = fn(*args)
    return fast, ref


def _leaves(m1, m2, order, seed=0):
    return [t.requires_grad_(True) for t in _inputs(m1, m2, order, seed)]


def _hvp(rho, alpha, beta):
    """Value, gradient and a Hessian-vector product by reverse over reverse."""
    leaves = (rho, alpha, beta)
    value = _loss(*leaves)
    grads = torch.autograd.grad(value, leaves, create_graph=True)
    vs = [torch.cos(torch.arange(t.numel(), dtype=t.dtype)).reshape(t.shape) for t in leaves]
    hv = torch.autograd.grad(grads, leaves, vs)
    return [value, *grads, *hv]


def _fwd_over_rev(rho, alpha, beta):
    """A Hessian-vector product by forward over reverse (dual inputs through a reverse-mode gradient)."""
    vs = [torch.sin(1.0 + torch.arange(t.numel(), dtype=t.dtype)).reshape(t.shape) for t in (rho, alpha, beta)]
    with forward_ad.dual_level():
        duals = [forward_ad.make_dual(t.detach(), v).requires_grad_(True) for t, v in zip((rho, alpha, beta), vs)]
        grads = torch.autograd.grad(_loss(*duals), duals, create_graph=True)
        return [forward_ad.unpack_dual(g).tangent for g in grads]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("shape", SHAPES)
def test_value_gradient_and_hvp_match_reference(order, shape):
    fast, ref = _both_paths(_hvp, *_leaves(*shape, order))
    for f, r in zip(fast, ref):
        _close(f, r)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_over_reverse_matches_reference(order, shape):
    fast, ref = _both_paths(_fwd_over_rev, *_leaves(*shape, order, seed=1))
    for f, r in zip(fast, ref):
        _close(f, r)


@pytest.mark.parametrize("order", (2, 32))
def test_batched_cotangents_match_reference(order):
    """``is_grads_batched`` (the batched Hessian products of second_order.hessian) runs the fused backward under vmap."""
    leaves = _leaves(4, 3, order, seed=2)

    def batched_hvp(*leaves):
        grads = torch.autograd.grad(_loss(*leaves), leaves, create_graph=True)
        vs = [torch.randn((3, *t.shape), generator=torch.Generator().manual_seed(3), dtype=t.dtype) for t in leaves]
        return list(torch.autograd.grad(grads, leaves, vs, is_grads_batched=True))

    fast, ref = _both_paths(batched_hvp, *leaves)
    for f, r in zip(fast, ref):
        _close(f, r)


@pytest.mark.parametrize("order", (1, 8))
def test_torch_func_transforms_fall_back_and_match(order):
    """Under torch.func the reference path runs (wrapped tensors); it agrees with the fused path run without transforms."""
    rho, alpha, beta = _inputs(3, 5, order, seed=4)
    hessian = torch.func.hessian(_loss, argnums=(0, 1, 2))(rho, alpha, beta)
    fast = _hvp(*(t.clone().requires_grad_(True) for t in (rho, alpha, beta)))
    vs = [torch.cos(torch.arange(t.numel(), dtype=t.dtype)).reshape(t.shape) for t in (rho, alpha, beta)]
    for row, hv in zip(hessian, fast[4:]):
        _close(hv, sum(torch.tensordot(block, v, dims=v.dim()) for block, v in zip(row, vs)))
    batch = torch.stack([rho, -rho, 0.5 * rho])
    vmapped = torch.func.vmap(lambda r: mehler_series(r, alpha, beta))(batch)
    for b, row in zip(batch, vmapped):
        _close(mehler_series(b, alpha, beta), row)
    tangents = (torch.ones_like(rho), torch.zeros_like(alpha), beta)
    jvp_func = torch.func.jvp(mehler_series, (rho, alpha, beta), tangents)[1]
    with forward_ad.dual_level():
        duals = [forward_ad.make_dual(t, dt) for t, dt in zip((rho, alpha, beta), tangents)]
        jvp_fused = forward_ad.unpack_dual(mehler_series(*duals)).tangent
    _close(jvp_fused, jvp_func)


def test_fast_path_is_the_default_for_cpu_float64_only():
    rho, alpha, beta = _inputs(2, 2, 3)
    assert fused_applies(rho, alpha, beta)
    assert not fused_applies(rho.float(), alpha.float(), beta.float())
    with reference_kernels():
        assert not fused_applies(rho, alpha, beta)
        with reference_kernels(enabled=False):
            assert fused_applies(rho, alpha, beta)
        assert not fused_applies(rho, alpha, beta)
    assert fused_applies(rho, alpha, beta)
    torch.func.vmap(lambda r: _assert_not_fused(r, alpha, beta))(rho[None])


def _assert_not_fused(rho, alpha, beta):
    assert fused_series.wrapped(rho) and not fused_applies(rho, alpha, beta)
    return rho


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("need_q, need_r", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("shape", SHAPES)
def test_numba_primitives_match_their_torch_forms(need_q, need_r, shape, parallel, monkeypatch):
    """Each kernel (serial, and in parallel row blocks) against its torch form, K = 3 stacked pairs, the unused output zero."""
    if parallel:
        monkeypatch.setattr(fused_series, "PARALLEL_WORK", 0)
    m1, m2 = shape
    gen = torch.Generator().manual_seed(5)
    rho = 2.0 * torch.rand(m1, m2, generator=gen, dtype=torch.float64) - 1.0
    g = torch.randn(m1, m2, generator=gen, dtype=torch.float64)
    a = torch.randn(3, m1, 9, generator=gen, dtype=torch.float64)
    b = torch.randn(3, m2, 9, generator=gen, dtype=torch.float64)
    _close(series(rho, a, b), series_torch(rho, a, b))
    q, r = contract(g, rho, a, b, need_q, need_r)
    q_ref, r_ref = contract_torch(g, rho, a, b, need_q, need_r)
    for fast, ref, needed in ((q, q_ref, need_q), (r, r_ref, need_r)):
        assert fast.shape == ref.shape
        _close(fast, ref)
        assert needed or not fast.any()


def test_fused_functions_pass_gradcheck_and_gradgradcheck():
    """Every first and second derivative rule of the two Functions against finite differences (K = 2, M1 ≠ M2)."""
    gen = torch.Generator().manual_seed(6)
    rho = (1.8 * torch.rand(3, 2, generator=gen, dtype=torch.float64) - 0.9).requires_grad_(True)
    g = torch.randn(3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    a = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 2, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    checks = dict(check_forward_ad=True, check_batched_grad=True)
    assert torch.autograd.gradcheck(_Series.apply, (rho, a, b), **checks)
    for flags in ((True, True), (True, False), (False, True)):
        contract_fn = lambda *x, flags=flags: _Contract.apply(*x, *flags)  # noqa: E731
        assert torch.autograd.gradcheck(contract_fn, (g, rho, a, b), **checks)
        assert torch.autograd.gradgradcheck(contract_fn, (g, rho, a, b), check_fwd_over_rev=True)
    assert torch.autograd.gradgradcheck(_Series.apply, (rho, a, b), check_fwd_over_rev=True, check_rev_over_rev=True)


def test_gradcheck_detects_a_wrong_rule(monkeypatch):
    """The finite-difference check above can fail: a slope off by a factor is caught."""
    original = fused_series.derivative_coefficients
    monkeypatch.setattr(fused_series, "derivative_coefficients", lambda a: 1.01 * original(a))
    rho, alpha, beta = (t.requires_grad_(True) for t in _inputs(2, 3, 4))
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(mehler_series, (rho, alpha, beta))
