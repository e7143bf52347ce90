"""Every verdict of docs/theory.md §8 reached on a constructed case, with its certificate."""

import numpy as np
import pytest

from landscape.cases import dead_neuron_saddle, orthogonal_teacher_landscape, teacher_measure
from landscape.landscape import AttentionLandscape
from landscape.model.activations import get_activation
from landscape.model.expectations import ExactGaussianExpectation
from landscape.model.measure import ParticleMeasure
from landscape.model.teacher import Teacher
from landscape.second_order.classify import VERDICTS, analyze, line_search
from landscape.second_order.references import dense_spectrum
from landscape.second_order.settings import AnalysisSettings


def _one_neuron_for_two_features():
    """Teacher with two orthogonal erf neurons and features; student k = 1, M = 1 on the first neuron.

    Not realizable (k < k°), so L* is unknown; the student is critical by symmetry and a local minimum
    (turning it towards the second neuron loses more of the first feature than it gains: arcsin is convex).
    """
    act = get_activation("erf")
    teacher = Teacher(np.eye(2), 1.5 * np.eye(3)[:2], act)
    landscape = AttentionLandscape(teacher, ExactGaussianExpectation(teacher, act))
    return landscape, ParticleMeasure(np.ones((1, 1)), 1.5 * np.eye(3)[:1])


def test_global_minimum_at_the_teacher():
    landscape = orthogonal_teacher_landscape(3, 4, noise=0.1)
    result = analyze(landscape, teacher_measure(3, 4))
    assert result.verdict == "global_minimum" and result.loss_star == pytest.approx(0.005)
    h = result.hessian
    assert h.null.null_dim == 9 and h.zero_count == 9 and h.lambda_min > 1e-3 and h.eigen.converged
    assert result.certificate is None and result.curvature is None and result.warnings == []


def test_strict_saddle_with_certificate():
    """§9 saddle: ψ0 with a tiny residual, an interval below zero, L decreasing along ψ0; one negative eigenvalue."""
    landscape = orthogonal_teacher_landscape(3, 4)
    mu = dead_neuron_saddle(3, 4)
    result = analyze(landscape, mu)
    assert result.verdict == "strict_saddle"
    lam, _ = dense_spectrum(landscape, mu)
    assert result.hessian.lambda_min == pytest.approx(lam[0], abs=1e-9)
    assert result.hessian.zero_count == int(np.sum(np.abs(lam) < 1e-8))
    cert = result.certificate
    assert cert["certified"] and cert["residual"] < 1e-10 and cert["interval"][1] < 0
    search = cert["line_search"]
    assert search["decreases"] and all(step["loss"] < search["loss"] for step in search["steps"] if step["s"] <= search["certified_up_to"])
    # the field is unit in L²(µ)
    psi_a, psi_w = result.psi0
    assert float(np.sum(mu.p[:, None] * (psi_a**2).sum(1, keepdims=True) + mu.p[:, None] * (psi_w**2).sum(1, keepdims=True))) == pytest.approx(1.0)
    assert result.curvature is not None and result.curvature.second_variation < 0


def test_not_critical_at_a_random_measure():
    landscape = orthogonal_teacher_landscape(3, 4)
    rng = np.random.default_rng(0)
    result = analyze(landscape, ParticleMeasure(rng.standard_normal((4, 3)), rng.standard_normal((4, 4))))
    assert result.verdict == "not_critical" and result.evaluation.grad_norm > 1e-3


def test_second_order_stationary_when_l_star_is_unknown():
    landscape, mu = _one_neuron_for_two_features()
    result = analyze(landscape, mu)
    assert result.loss_star is None and result.verdict == "second_order_stationary"
    assert result.hessian.lambda_min > 1e-3 and result.curvature is not None


def test_degenerate_verdict_warns_loudly():
    """The same point with a stated (unreachable) L* = 0: no negative curvature and L > L*."""
    landscape, mu = _one_neuron_for_two_features()
    settings = AnalysisSettings.from_table({"loss_star": 0.0})
    result = analyze(landscape, mu, settings)
    assert result.verdict == "degenerate"
    assert any(message.startswith("DEGENERATE") and "counterexample" in message for message in result.warnings)


def test_verdicts_depend_on_the_stated_tolerances():
    """A loose grad_tol makes a near-critical point critical; a tight one does not."""
    landscape = orthogonal_teacher_landscape(3, 4)
    saddle = dead_neuron_saddle(3, 4)
    near = ParticleMeasure(saddle.a, saddle.w + 1e-6 * np.eye(4)[[1, 2, 3]])
    loose = analyze(landscape, near, AnalysisSettings.from_table({"grad_tol": 1e-3}))
    tight = analyze(landscape, near, AnalysisSettings.from_table({"grad_tol": 1e-12}))
    assert loose.verdict == "strict_saddle" and tight.verdict == "not_critical"
    refined = analyze(landscape, near, AnalysisSettings.from_table({"grad_tol": 1e-12}), refine_first=True)
    assert refined.verdict == "strict_saddle" and refined.refinement.converged


def test_lobpcg_gives_the_same_verdict():
    landscape = orthogonal_teacher_landscape(3, 6)
    result = analyze(landscape, dead_neuron_saddle(3, 6), AnalysisSettings.from_table({"method": "lobpcg", "eigen_count": 2}))
    assert result.verdict == "strict_saddle" and result.hessian.eigen.method in ("lobpcg", "dense")
    assert len(result.to_dict()["hessian"]["eigenvalues"]) == 2


def test_line_search_resolvability():
    """Steps whose predicted change is below rounding are not counted as evidence."""
    landscape = orthogonal_teacher_landscape(2, 3)
    mu = teacher_measure(2, 3)
    zero = (np.zeros((2, 2)), np.zeros((2, 3)))
    out = line_search(landscape, mu, zero, 0.5, 4, curvature=-1.0)
    assert not out["decreases"] and out["certified_up_to"] is None


def test_verdict_names():
    assert VERDICTS == ("global_minimum", "strict_saddle", "degenerate", "second_order_stationary", "not_critical")
