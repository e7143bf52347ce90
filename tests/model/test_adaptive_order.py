"""``hermite_order = "auto"`` (the default): the Mehler order chosen per measure meets its kernel tolerance.

Reference: the same Mehler series at order 1024 on a step of 0.025 (its own truncation is
below 1e-15 at these weights: tests/model/test_kernels.py measures the series against 2-D
quadrature), so the comparison isolates the chosen order's truncation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.io.problem import parse_problem
from landscape.model.expectations import AUTO_KERNEL_TOL, AUTO_ORDERS, truncation_bound
from landscape.model.kernels import HermiteQuadrature, gaussian_kernel

REFERENCE = HermiteQuadrature(1024, 0.025)


def _spec(activation: str, expectation: dict | None = None, bias: bool = False):
    return parse_problem(
        {
            "teacher": {"activation": activation, "c": [[1.0, 0.0], [0.0, 1.0]], "u": [[1.0, 0.0], [0.0, 0.8]]},
            "model": {"features": 2, "bias": bias},
            "expectation": expectation or {},
        }
    )


def _kernels(spec, quadrature: HermiteQuadrature, w: np.ndarray) -> torch.Tensor:
    """Student–student and student–teacher kernel blocks, side by side: shape (M, M + L)."""
    t = torch.as_tensor(w)
    u, b = (t[:, :-1], t[:, -1]) if spec.bias else (t, None)
    teacher = torch.as_tensor(spec.teacher.u)
    act, tact = spec.activation, spec.teacher.activation
    return torch.cat(
        [gaussian_kernel(act, u, b, act, u, b, quadrature), gaussian_kernel(act, u, b, tact, teacher, None, quadrature)], dim=1
    )


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("radius", [0.5, 1.0, 2.0, 3.0, 5.0])
def test_the_chosen_order_meets_the_tolerance_or_says_it_does_not(activation, radius):
    spec = _spec(activation)
    w = np.array([[0.6 * radius, 0.8 * radius], [0.5, -0.3], [-0.2 * radius, 0.1]])
    backend = spec.expectation(weights=w)
    choice = backend.describe()["hermite_order_auto"]
    order = backend.quadrature.order
    error = float((_kernels(spec, backend.quadrature, w) - _kernels(spec, REFERENCE, w)).abs().max())
    if choice["met"]:
        assert error <= AUTO_KERNEL_TOL
        assert choice["bound"] <= AUTO_KERNEL_TOL
        smaller = [o for o in AUTO_ORDERS if o < order]
        if smaller:  # the smallest such order: the one below it does not pass the bound
            below = HermiteQuadrature(smaller[-1], backend.quadrature.step)
            assert truncation_bound(below, spec.teacher, spec.activation, spec.bias, w) > AUTO_KERNEL_TOL
    else:
        assert order == max(AUTO_ORDERS) and choice["bound"] > AUTO_KERNEL_TOL
        assert error > 1e-3 * AUTO_KERNEL_TOL  # a refusal to promise is not a needless one
    assert backend.describe()["hermite_order"] == order


def test_small_weights_get_a_small_order_and_large_ones_a_large_order():
    orders = [_spec("sigmoid").expectation(weights=np.array([[r, 0.0]])).quadrature.order for r in (0.5, 2.0, 5.0)]
    assert orders == sorted(orders) and orders[0] < orders[-1]


def test_a_bias_enters_the_choice():
    spec = _spec("sigmoid", bias=True)
    plain = spec.expectation(weights=np.array([[1.0, 0.0, 0.0]])).quadrature.order
    biased = spec.expectation(weights=np.array([[1.0, 0.0, 6.0]]))
    w = np.array([[1.0, 0.0, 6.0]])
    assert biased.quadrature.order >= plain
    if biased.describe()["hermite_order_auto"]["met"]:
        assert float((_kernels(spec, biased.quadrature, w) - _kernels(spec, REFERENCE, w)).abs().max()) <= AUTO_KERNEL_TOL


def test_an_explicit_order_is_kept_exactly():
    spec = _spec("tanh", {"hermite_order": 64, "hermite_step": 0.04})
    backend = spec.expectation(weights=np.array([[5.0, 0.0]]))
    assert (backend.quadrature.order, backend.quadrature.step) == (64, 0.04)
    assert "hermite_order_auto" not in backend.describe() and not spec.auto_order


def test_auto_is_the_default_and_the_word_is_checked():
    assert _spec("tanh").auto_order and _spec("tanh", {"hermite_order": "auto"}).auto_order
    assert _spec("tanh").expectation().quadrature.order == HermiteQuadrature.order  # no measure: the fixed default
    with pytest.raises(ValueError, match='hermite_order must be "auto" or an integer'):
        _spec("tanh", {"hermite_order": "automatic"})


def test_headroom_scales_the_weights():
    spec = _spec("tanh")
    w = np.array([[1.0, 0.0]])
    assert spec.expectation(weights=w, headroom=2.0).quadrature.order == spec.expectation(weights=2 * w).quadrature.order
