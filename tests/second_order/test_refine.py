"""Newton–Krylov refinement back to a critical point (docs/theory.md §8)."""

import numpy as np
import pytest

from landscape.cases import dead_neuron_saddle, orthogonal_teacher_landscape
from landscape.model.measure import ParticleMeasure
from landscape.second_order.refine import refine, residual


def test_refinement_returns_a_perturbed_saddle_to_the_saddle():
    """From the §9 saddle perturbed by 1e-2, the residual reaches 1e-12 and L returns to the saddle's value."""
    landscape = orthogonal_teacher_landscape(3, 4)
    saddle = dead_neuron_saddle(3, 4)
    rng = np.random.default_rng(1)
    start = ParticleMeasure(saddle.a + 1e-2 * rng.standard_normal((3, 3)), saddle.w + 1e-2 * rng.standard_normal((3, 4)))
    result = refine(landscape, start, tol=1e-12)
    assert result.converged and result.reason == "tolerance" and result.residual <= 1e-12
    assert result.residual == pytest.approx(residual(landscape, result.measure)[0], abs=1e-15)
    assert result.loss == pytest.approx(float(landscape.evaluate(saddle).loss), abs=1e-12)
    residuals = [step.residual for step in result.path]
    assert residuals[0] > 1e-3 and all(b < a for a, b in zip(residuals, residuals[1:]))
    assert len(result.path) <= 8  # quadratic convergence: a handful of steps
    # back on the saddle: the dead neuron is still orthogonal (up to O(1e-2)) to the missing e_3 direction
    assert abs(result.measure.w[2, 2]) < 0.05
    assert result.hvp_count > 0 and result.to_dict()["path"][0]["iteration"] == 0


def test_refinement_of_a_critical_point_takes_no_step():
    landscape = orthogonal_teacher_landscape(3, 4)
    result = refine(landscape, dead_neuron_saddle(3, 4))
    assert result.converged and len(result.path) == 1 and result.hvp_count == 0


def test_refinement_rejects_bad_tolerance():
    with pytest.raises(ValueError, match="tol"):
        refine(orthogonal_teacher_landscape(2, 3), dead_neuron_saddle(2, 3), tol=0.0)


def _split_saddle(seed: int) -> ParticleMeasure:
    """The §9 saddle (k° = 3, d = 4) with its first teacher particle split in two copies (weights 0.3 : 0.7),
    perturbed by 1e-2: the Hessian is singular beyond the symmetries, so Newton converges only linearly."""
    base = dead_neuron_saddle(3, 4)
    a, w = np.vstack([base.a, base.a[:1]]), np.vstack([base.w, base.w[:1]])
    rng = np.random.default_rng(seed)
    p = np.array([0.3, 1.0, 1.0, 0.7]) / 3.0
    return ParticleMeasure(a + 1e-2 * rng.standard_normal(a.shape), w + 1e-2 * rng.standard_normal(w.shape), p)


def test_refinement_short_of_its_tolerance_at_a_split_saddle_warns():
    """Issue 15: at a split-particle saddle the residual stalls near its rounding floor; a stop above ``tol``
    is not silent (reason, residual, rate and the setting in ``warnings``), and one at ``tol`` has none."""
    landscape = orthogonal_teacher_landscape(3, 4)
    start = _split_saddle(0)
    reached = refine(landscape, start, tol=1e-11)
    assert reached.converged and reached.warnings == [] and reached.to_dict()["warnings"] == []
    stalled = refine(landscape, start, tol=1e-15, maxiter=12)
    assert not stalled.converged and stalled.reason in ("maxiter", "stagnated")
    assert len(stalled.warnings) == 1 and stalled.to_dict()["warnings"] == stalled.warnings
    message = stalled.warnings[0]
    assert f"residual {stalled.residual:.3e} > refine_tol 1.0e-15" in message and "split particles" in message
    # linear, not quadratic (a singular Hessian): the last five steps each keep 20–90 % of the residual
    rates = [b.residual / a.residual for a, b in zip(stalled.path[-6:], stalled.path[-5:])]
    assert all(0.2 < r < 0.9 for r in rates), rates
    mean = (stalled.residual / stalled.path[0].residual) ** (1 / (len(stalled.path) - 1))
    assert f"mean rate {mean:.2f} per step" in message


def test_refinement_stops_when_the_residual_stagnates():
    """At a residual floor no step lowers ``g`` by half over ``STALL_WINDOW`` iterations: the iteration stops
    there (``"stagnated"``), well before ``maxiter``, and says so."""
    from landscape.second_order.refine import STALL_FACTOR, STALL_WINDOW

    landscape = orthogonal_teacher_landscape(3, 4)
    result = refine(landscape, _split_saddle(2), tol=1e-16, maxiter=200)
    assert result.reason == "stagnated" and len(result.path) - 1 < 200
    residuals = [step.residual for step in result.path]
    assert residuals[-1] > STALL_FACTOR * residuals[-1 - STALL_WINDOW]
    assert "fell by less than 0.5 over 8 iterations" in result.warnings[0]


def test_analysis_shows_the_refinement_warning():
    """``analyze(refine_first=True)`` carries the refinement's warning (the CLI prints ``Analysis.warnings``)."""
    from landscape.second_order.classify import analyze
    from landscape.second_order.settings import AnalysisSettings

    landscape = orthogonal_teacher_landscape(3, 4)
    settings = AnalysisSettings.defaults(landscape.dtype)
    settings = type(settings)(**{**settings.__dict__, "refine_tol": 1e-15, "refine_maxiter": 4})
    result = analyze(landscape, _split_saddle(0), settings, refine_first=True)
    assert result.refinement.warnings and result.warnings[0] == result.refinement.warnings[0]
