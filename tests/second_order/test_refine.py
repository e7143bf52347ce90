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
