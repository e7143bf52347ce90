"""Regenerate the bundled example measures (run from the repository root)."""

from pathlib import Path

import numpy as np

from landscape.measure import ParticleMeasure

HERE = Path(__file__).parent
SCALE = 1.5
EYE = np.eye(6)

# The teacher itself: the global minimum, L = ½τ².
ParticleMeasure(np.eye(3), SCALE * EYE[:3]).save(HERE / "teacher.npz")
# Two features learned, the third neuron dead at 1.5 e_4: a strict saddle (docs/theory.md §9).
ParticleMeasure(np.eye(3), SCALE * EYE[[0, 1, 3]]).save(HERE / "saddle.npz")
# Probes: the dead neuron turned towards the missing direction, and the missing neuron.
ParticleMeasure(np.array([[0.0, 0.0, 1.0]] * 2), SCALE * np.stack([(EYE[3] + 0.1 * EYE[2]), EYE[2]])).save(
    HERE / "probes.npz"
)
# A generic measure (not critical): six particles from a seeded Gaussian.
rng = np.random.default_rng(0)
ParticleMeasure(rng.standard_normal((6, 3)), rng.standard_normal((6, 6))).save(HERE / "random.npz")
