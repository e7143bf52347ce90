"""Closed-form derivatives of the Hermite coefficients (``kernels._Coefficients``) against autograd through the grid.

The fast path forms ``∂_r^p ∂_b^q α`` from closed-form ``σ⁽ᵏ⁾`` (``Activation.derivatives``);
the reference (inside ``reference_kernels()``) differentiates ``σ(r g + b) @ T`` by autograd.
Both are derivatives of the same quadrature, so they agree to rounding at every order.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import exact_landscape, random_measure, random_teacher

from landscape.cases import orthogonal_teacher_landscape
from landscape.model import kernels
from landscape.model.activations import BUILTIN_ACTIVATIONS, Activation, get_activation
from landscape.model.fused_series import closed_derivatives_apply, reference_kernels
from landscape.model.kernels import HermiteQuadrature

RTOL = 1e-12


def _relative(fast: torch.Tensor, ref: torch.Tensor) -> float:
    fast, ref = fast.detach(), ref.detach()
    return float((fast - ref).abs().max() / ref.abs().max().clamp(min=1e-300))


def _products(fn, leaves: list[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """Value, gradient, double-backward HVP and forward-over-reverse JVP of the scalar ``fn(*leaves)``.

    Returns the flattened value, gradients, HVPs and JVPs (same tangent ``v`` for both products).
    """
    gen = torch.Generator().manual_seed(seed)
    leaves = [t.detach().clone().requires_grad_(True) for t in leaves]
    tangents = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in leaves]
    value = fn(*leaves)
    grads = torch.autograd.grad(value, leaves, create_graph=True)
    hvp = torch.autograd.grad(grads, leaves, tangents)
    with torch.autograd.forward_ad.dual_level():
        duals = [torch.autograd.forward_ad.make_dual(t.detach(), v) for t, v in zip(leaves, tangents, strict=True)]
        primal = [d.requires_grad_(True) for d in duals]
        fo_grads = torch.autograd.grad(fn(*primal), primal, create_graph=True)
        jvp = [torch.autograd.forward_ad.unpack_dual(g).tangent for g in fo_grads]
    return [value.detach().reshape(-1), *[g.detach() for g in grads], *hvp, *jvp]


def _fast_and_reference(fn, leaves: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    fast = _products(fn, leaves)
    with reference_kernels():
        ref = _products(fn, leaves)
    return fast, ref


@pytest.mark.parametrize("name", sorted(BUILTIN_ACTIVATIONS))
def test_activation_closed_form_derivatives_match_autograd(name):
    act = get_activation(name)
    plain = Activation(name, act.fn)  # no closed form: nested autograd
    z = torch.linspace(-9.0, 9.0, 1001, dtype=torch.float64)
    closed, auto = act.derivatives(z, 4), plain.derivatives(z, 4)
    assert len(closed) == len(auto) == 5
    assert torch.equal(closed[0], act.fn(z))
    for k, (c, a) in enumerate(zip(closed, auto, strict=True)):
        assert float((c - a).abs().max()) <= 1e-13 * max(1.0, float(a.abs().max())), (name, k)
    for lowest in range(5):
        assert all(torch.equal(c, a) for c, a in zip(act.derivatives(z, 4, lowest), closed[lowest:], strict=True))
    with pytest.raises(ValueError, match="lowest"):
        act.derivatives(z, 1, 2)


@pytest.mark.parametrize("name", sorted(BUILTIN_ACTIVATIONS))
@pytest.mark.parametrize("biased", [False, True])
def test_coefficient_products_match_reference(name, biased):
    """Value, gradient, HVP, forward-over-reverse JVP of a nonlinear function of α(r, b), and of the small-radius form."""
    act = get_activation(name)
    rule = HermiteQuadrature(order=24)
    gen = torch.Generator().manual_seed(1)
    radius = 0.2 + 1.5 * torch.rand(6, generator=gen, dtype=torch.float64)
    bias = torch.randn(6, generator=gen, dtype=torch.float64)
    weights = torch.randn(6, 25, generator=gen, dtype=torch.float64)

    def of_coefficients(r, *b):
        alpha = rule.coefficients(act, r, b[0] if b else None)
        return (torch.sin(3.0 * alpha) * weights).sum() + (alpha**2).sum() * r.sum()

    fast, ref = _fast_and_reference(of_coefficients, [radius, bias] if biased else [radius])
    for f, r in zip(fast, ref, strict=True):
        assert _relative(f, r) < RTOL
    w = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    w[0] *= 1e-3  # below r₀ = ε^{1/8}: the Taylor form of _scaled_coefficients
    w[1] = 0.0

    def of_scaled(w_, *b):
        _, alpha = rule._scaled_coefficients(act, w_, b[0] if b else None)
        return (torch.cos(alpha) * weights).sum()

    fast, ref = _fast_and_reference(of_scaled, [w, bias] if biased else [w])
    for f, r in zip(fast, ref, strict=True):
        assert _relative(f, r) < RTOL


def _landscapes():
    rng = np.random.default_rng(3)
    teacher = random_teacher(rng, neurons=3, k0=2, d=3)
    return {
        "sigmoid": (orthogonal_teacher_landscape(neurons=2, dim=4, activation="sigmoid"), 4),
        "tanh": (orthogonal_teacher_landscape(neurons=2, dim=4, activation="tanh"), 4),
        "sigmoid, biased": (exact_landscape(teacher, "sigmoid", bias=True, quadrature=HermiteQuadrature(order=48)), 4),
    }


@pytest.mark.parametrize("case", ["sigmoid", "tanh", "sigmoid, biased"])
def test_landscape_loss_products_match_reference(case):
    landscape, dim = _landscapes()[case]
    measure = random_measure(np.random.default_rng(5), m=5, k=2, d=dim)
    a, w, p = measure.tensors()
    fast, ref = _fast_and_reference(landscape.loss, [a, w, p])
    for f, r in zip(fast, ref, strict=True):
        assert _relative(f, r) < RTOL


@pytest.mark.parametrize("name", ["sigmoid", "gelu"])
def test_coefficients_gradcheck_and_gradgradcheck(name):
    act = get_activation(name)
    rule = HermiteQuadrature(order=6, step=0.1)
    gen = torch.Generator().manual_seed(2)
    radius = (0.3 + torch.rand(3, generator=gen, dtype=torch.float64)).requires_grad_(True)
    bias = torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_(True)

    def coefficients(r, b):
        return rule.coefficients(act, r, b)

    assert torch.autograd.gradcheck(coefficients, (radius, bias), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(coefficients, (radius, bias))


def test_fast_path_is_selected_and_switchable():
    act = get_activation("sigmoid")
    radius = torch.tensor([0.5, 1.0], dtype=torch.float64, requires_grad=True)
    rule = HermiteQuadrature(order=8)
    assert closed_derivatives_apply(radius)
    assert type(rule.coefficients(act, radius, None).grad_fn).__name__ == "_CoefficientsBackward"
    with reference_kernels():
        assert not closed_derivatives_apply(radius)
        assert type(rule.coefficients(act, radius, None).grad_fn).__name__ == "MmBackward0"


def test_a_wrong_second_derivative_is_caught(monkeypatch):
    """Can fail: a σ whose closed-form σ'' is off by 1e-6 keeps values and gradients but not the HVP."""
    sigmoid = get_activation("sigmoid")

    def wrong(z, lowest, order):
        out = sigmoid.higher(z, 0, order)
        if order >= 2:
            out[2] = out[2] * (1.0 + 1e-6)
        return out[lowest:]

    flawed = Activation("sigmoid", torch.sigmoid, higher=wrong)
    rule = HermiteQuadrature(order=12)
    radius = torch.tensor([0.4, 0.9, 1.3], dtype=torch.float64)

    def of_coefficients(r):
        return (torch.sin(rule.coefficients(flawed, r, None))).sum()

    fast, ref = _fast_and_reference(of_coefficients, [radius])
    value, grad, hvp, jvp = fast
    assert _relative(value, ref[0]) < RTOL and _relative(grad, ref[1]) < RTOL
    assert _relative(hvp, ref[2]) > 1e-8 and _relative(jvp, ref[3]) > 1e-8
    monkeypatch.setattr(kernels, "closed_derivatives_apply", lambda *tensors: False)
    assert all(_relative(f, r) < RTOL for f, r in zip(_products(of_coefficients, [radius]), ref, strict=True))


def test_batched_hessian_products_match_reference():
    """Legacy batched cotangents (``is_grads_batched``, as in second_order.hessian) through the closed forms."""
    landscape, dim = _landscapes()["sigmoid, biased"]
    a, w, p = random_measure(np.random.default_rng(6), m=4, k=2, d=dim).tensors()
    tangents = torch.randn((3, *w.shape), generator=torch.Generator().manual_seed(0), dtype=w.dtype)

    def batched_hvp() -> torch.Tensor:
        leaf = w.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(landscape.loss(a, leaf, p), leaf, create_graph=True)
        return torch.autograd.grad(grad, leaf, tangents, is_grads_batched=True)[0]

    fast = batched_hvp()
    with reference_kernels():
        ref = batched_hvp()
    assert _relative(fast, ref) < RTOL
