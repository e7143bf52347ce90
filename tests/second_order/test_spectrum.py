"""Stochastic Lanczos quadrature and Hutchinson's trace against the dense spectrum (docs/theory.md §7, "Whole spectrum")."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from landscape.cases import near_teacher_measure, orthogonal_teacher_landscape
from landscape.second_order import spectrum
from landscape.second_order.operators import DenseOperator, WassersteinHessian
from landscape.second_order.references import dense_wasserstein_hessian
from landscape.second_order.refine import refine


@pytest.fixture(scope="module")
def critical_point():
    """A critical point with a generic (non-diagonal) Hessian: M = 6 particles near the k° = 2 teacher in d = 3, refined
    by Newton–Krylov (n = 30; 18 zero and 12 positive eigenvalues spread over [4e-4, 1.4]).

    Returns the landscape, the measure, the dense Wasserstein Hessian as an operator (the statistical
    tests run on it: one dense product costs far less than a batched HVP) and its eigenvalues.
    """
    landscape = orthogonal_teacher_landscape(neurons=2, dim=3)
    result = refine(landscape, near_teacher_measure(6, 2, 3, spread=0.5, seed=1))
    assert result.residual < 1e-10
    hessian = dense_wasserstein_hessian(landscape, result.measure)
    hessian = 0.5 * (hessian + hessian.T)
    return landscape, result.measure, DenseOperator(hessian), torch.linalg.eigvalsh(hessian).numpy()


def _w1_to_truth(density: spectrum.SpectralDensity, lam: np.ndarray) -> float:
    return spectrum.wasserstein1(density.nodes, density.weights, lam, np.full(lam.size, 1.0 / lam.size))


def test_wasserstein1_matches_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(7), 2.0 + rng.standard_normal(11)
    p, q = rng.dirichlet(np.ones(7)), rng.dirichlet(np.ones(11))
    assert spectrum.wasserstein1(x, p, y, q) == pytest.approx(scipy.stats.wasserstein_distance(x, y, p, q), rel=1e-12)
    assert spectrum.wasserstein1(x, p, x, p) == 0.0
    assert spectrum.wasserstein1([0.0], [1.0], [3.0], [1.0]) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="equal total masses"):
        spectrum.wasserstein1(x, p, y, 2 * q)
    with pytest.raises(ValueError, match="one weight per point"):
        spectrum.wasserstein1(x, p[:3], y, q)


def test_full_krylov_space_gives_each_probe_an_exact_rule():
    """With m = n steps every probe's Gauss rule integrates λ^j exactly (j < 2n): Σ τ² θ^j = zᵀ A^j z / n."""
    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    matrix = basis @ np.diag(np.linspace(-1.0, 2.0, 12)) @ basis.T
    density = spectrum.spectral_density(DenseOperator(torch.as_tensor(matrix)), probes=1, steps=12, seed=5)
    z = np.random.default_rng(5).choice([-1.0, 1.0], size=(12, 1))[:, 0]
    for j in range(4):
        moment = z @ np.linalg.matrix_power(matrix, j) @ z / 12
        assert np.sum(density.weights * density.nodes**j) == pytest.approx(moment, rel=1e-10, abs=1e-12)
    assert density.weights.sum() == pytest.approx(1.0, rel=1e-13)
    assert density.trace.value == pytest.approx(z @ matrix @ z, rel=1e-12)


def test_breakdown_stops_at_an_invariant_krylov_space():
    """A matrix with 3 distinct eigenvalues: each probe stops after ≤ 3 steps, and the rule still sums to 1."""
    matrix = np.diag(np.repeat([-1.0, 0.5, 2.0], 5))
    op = DenseOperator(torch.as_tensor(matrix))
    density = spectrum.spectral_density(op, probes=4, steps=10, seed=0)
    per_probe = np.bincount(density.probe_index)
    assert per_probe.max() <= 3 and density.weights.sum() == pytest.approx(1.0)
    truth = np.repeat([-1.0, 0.5, 2.0], 5)
    assert _w1_to_truth(density, truth) < 1e-10  # Rademacher probes weigh the diagonal exactly
    assert density.hvp_count == op.calls


def test_slq_on_the_wasserstein_hessian_equals_slq_on_its_dense_matrix(critical_point):
    """The operator λ_min is computed on, applied by Hessian-vector products, gives the dense matrix's quadrature."""
    landscape, measure, dense, _ = critical_point
    op = WassersteinHessian(landscape, measure)
    fast, reference = (spectrum.spectral_density(o, probes=4, steps=12, seed=7) for o in (op, dense))
    np.testing.assert_allclose(fast.nodes, reference.nodes, rtol=0, atol=1e-10)
    np.testing.assert_allclose(fast.weights, reference.weights, rtol=0, atol=1e-8)
    assert fast.hvp_count == 4 * 12 and fast.trace.value == pytest.approx(reference.trace.value, rel=1e-12)


def test_slq_converges_to_the_dense_spectrum_at_a_critical_point(critical_point):
    """W1(SLQ measure, (1/n) Σ δ_λ) falls as probes and steps grow (mean over 3 seeds), to below 1% of the spectrum's width."""
    _, _, dense, lam = critical_point
    width = lam.max() - lam.min()
    errors, estimates = [], []
    for probes, steps in ((2, 3), (8, 8), (64, 30)):
        runs = [spectrum.spectral_density(dense, probes, steps, seed=s) for s in range(3)]
        errors.append(np.mean([_w1_to_truth(d, lam) for d in runs]))
        estimates.append(np.mean([d.error for d in runs]))
    assert errors[0] > 2 * errors[1] > 2 * errors[2], errors
    assert errors[2] < 0.01 * width, errors
    # the error estimate has the right size: within a factor 5 of the true W1 at the largest run
    assert errors[2] / 5 < estimates[2] < 5 * errors[2], (errors, estimates)


def test_hutchinson_trace_within_four_standard_errors(critical_point):
    _, _, dense, lam = critical_point
    for seed in range(3):
        trace = spectrum.spectral_density(dense, probes=32, steps=4, seed=seed).trace
        assert trace.probes == 32 and trace.stderr > 0
        assert abs(trace.value - lam.sum()) < 4 * trace.stderr, (trace, lam.sum())
    assert spectrum.hutchinson_trace(np.array([2.0])).value == 2.0


def test_wrong_quadrature_weights_give_a_large_w1(critical_point, monkeypatch):
    """Weights |first component| (normalised) instead of its square: W1 far above the correct rule's (can-fail)."""
    _, _, dense, lam = critical_point
    right = _w1_to_truth(spectrum.spectral_density(dense, 64, 30, seed=0), lam)

    def unsquared(alpha, beta):
        t = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        theta, vectors = np.linalg.eigh(t)
        return theta, np.abs(vectors[0]) / np.abs(vectors[0]).sum()

    monkeypatch.setattr(spectrum, "_quadrature", unsquared)
    wrong = _w1_to_truth(spectrum.spectral_density(dense, 64, 30, seed=0), lam)
    assert wrong > 5 * right and wrong > 0.02 * (lam.max() - lam.min()), (right, wrong)


def test_bad_arguments():
    op = DenseOperator(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="probes ≥ 1"):
        spectrum.spectral_density(op, probes=0)
    with pytest.raises(ValueError, match="at least one probe"):
        spectrum.hutchinson_trace(np.array([]))


# ---------------------------------------------------------------------- Hutch++
def _decaying(n: int = 100, seed: int = 0) -> tuple[DenseOperator, float]:
    """A symmetric matrix with eigenvalues ``j^-2`` (j = 1 … n) in a random basis, and its trace."""
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    lam = 1.0 / np.arange(1, n + 1) ** 2
    return DenseOperator(torch.as_tensor(basis @ np.diag(lam) @ basis.T)), float(lam.sum())


def _rms_error(op: DenseOperator, truth: float, products: int, method: str, seeds: int = 30) -> float:
    errors = [spectrum.trace_estimate(op, products, method, seed=s).value - truth for s in range(seeds)]
    return float(np.sqrt(np.mean(np.square(errors))))


def test_hutchpp_error_shrinks_with_products_and_beats_hutchinson_on_a_decaying_spectrum():
    """On eigenvalues j^-2 the rms error (30 seeds) against the dense trace falls as the products grow, faster than
    1/√m (the sketch takes the head exactly), and stays below plain Hutchinson's at every equal number of products."""
    op, truth = _decaying()
    plus = [_rms_error(op, truth, m, "hutch++") for m in (12, 48, 192)]
    plain = [_rms_error(op, truth, m, "hutchinson") for m in (12, 48, 192)]
    assert plus[0] > 4 * plus[1] > 16 * plus[2], plus  # 1/√m would give only 2× per step
    assert all(p < h / 2 for p, h in zip(plus, plain, strict=True)), (plus, plain)
    assert plain[0] > 1.5 * plain[1] > 2.25 * plain[2], plain
    for seed in range(3):  # the error estimate covers the error: within 4 standard errors of the residual part
        trace = spectrum.trace_estimate(op, 30, "hutch++", seed=seed)
        assert (trace.method, trace.products, trace.sketch, trace.probes) == ("hutch++", 30, 10, 10)
        assert abs(trace.value - truth) < 4 * trace.stderr, (trace, truth)
    calls = op.calls
    spectrum.trace_estimate(op, 31, "hutch++")
    assert op.calls - calls == 31  # s = 10 sketch, 10 for QᵀĤQ, 11 residual probes


def test_hutchpp_is_exact_when_the_sketch_spans_the_range(critical_point):
    """A rank-4 operator with a sketch of 5 columns, and the critical point's Hessian (rank 12, n = 30) with 16:
    the residual vanishes, so the value is the dense trace and the standard error is zero (to rounding)."""
    rng = np.random.default_rng(2)
    factor = rng.standard_normal((40, 4))
    low_rank = factor @ np.diag([3.0, -1.0, 0.5, 2.0]) @ factor.T
    trace = spectrum.trace_estimate(DenseOperator(torch.as_tensor(low_rank)), 15, "hutch++", seed=4)
    assert trace.sketch == 5 and trace.value == pytest.approx(np.trace(low_rank), rel=1e-12)
    assert trace.stderr < 1e-12 * abs(np.trace(low_rank))
    landscape, measure, dense, lam = critical_point
    assert np.sum(np.abs(lam) > 1e-8) == 12
    for op in (dense, WassersteinHessian(landscape, measure)):  # the HVP operator gives the dense matrix's value
        trace = spectrum.trace_estimate(op, 48, "hutch++", seed=1)
        assert trace.value == pytest.approx(lam.sum(), rel=1e-9) and trace.stderr < 1e-9 * lam.sum()
    plain = spectrum.trace_estimate(dense, 48, "hutchinson", seed=1)
    assert abs(plain.value - lam.sum()) > 1e3 * abs(trace.value - lam.sum())


def test_hutchpp_without_the_projection_fails(monkeypatch):
    """Can-fail: residual probes not projected off the sketch count its range twice, a bias of about tr Ĥ that the
    mean over 10 seeds shows far outside its standard error (and the right estimator has none)."""
    op, truth = _decaying()

    def mean_and_error() -> tuple[float, float]:
        values = [spectrum.trace_estimate(op, 30, "hutch++", seed=s).value for s in range(10)]
        return float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(10))

    right, right_error = mean_and_error()
    monkeypatch.setattr(spectrum, "_project_out", lambda q, x: x)
    wrong, wrong_error = mean_and_error()
    assert abs(right - truth) < 4 * right_error and abs(right - truth) < 0.01 * truth, (right, right_error, truth)
    assert wrong - truth > 5 * wrong_error and wrong > 1.5 * truth, (wrong, wrong_error, truth)


def test_spectral_density_with_hutchpp_spends_its_products_and_records_them(critical_point):
    _, _, dense, lam = critical_point
    calls = dense.calls
    density = spectrum.spectral_density(dense, probes=8, steps=5, seed=3, trace_method="hutch++")
    assert density.hvp_count == dense.calls - calls == 8 * 5 + 8
    record = density.trace.to_dict()
    assert (record["method"], record["products"], record["sketch"], record["probes"]) == ("hutch++", 8, 2, 4)
    assert abs(density.trace.value - lam.sum()) < 4 * density.trace.stderr
    plain = spectrum.spectral_density(dense, probes=8, steps=5, seed=3)  # the default: Hutchinson on the SLQ probes
    assert plain.trace.method == spectrum.DEFAULT_TRACE_METHOD == "hutchinson" and plain.hvp_count == 8 * 5
    assert plain.trace.to_dict()["products"] == 8 and plain.trace.sketch == 0
    np.testing.assert_array_equal(plain.nodes, density.nodes)  # the quadrature does not depend on the trace method
    with pytest.raises(ValueError, match="trace method must be one of hutchinson, hutch\\+\\+"):
        spectrum.spectral_density(dense, probes=4, trace_method="hutch")
    with pytest.raises(ValueError, match="hutch\\+\\+ needs at least 3 products"):
        spectrum.trace_estimate(dense, 2, "hutch++")
