"""Particle measures: validation and pickle-free, atomic .npz round trips."""

from __future__ import annotations

import numpy as np
import pytest

from landscape import ParticleMeasure


def test_defaults_to_uniform_weights_and_round_trips(tmp_path, rng):
    mu = ParticleMeasure(rng.standard_normal((4, 2)), rng.standard_normal((4, 3)))
    np.testing.assert_array_equal(mu.p, np.full(4, 0.25))
    mu.save(tmp_path / "m.npz")
    back = ParticleMeasure.load(tmp_path / "m.npz")
    for name in ("a", "w", "p"):
        np.testing.assert_array_equal(getattr(back, name), getattr(mu, name))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_flat_round_trip_is_particle_major(rng):
    mu = ParticleMeasure(rng.standard_normal((3, 2)), rng.standard_normal((3, 4)), rng.dirichlet(np.ones(3)))
    flat = mu.flat()
    np.testing.assert_array_equal(flat[:6], np.concatenate([mu.a[0], mu.w[0]]))
    again = mu.with_flat(flat)
    np.testing.assert_array_equal(again.a, mu.a)
    np.testing.assert_array_equal(again.w, mu.w)


def test_arrays_are_read_only(rng):
    mu = ParticleMeasure(rng.standard_normal((2, 2)), rng.standard_normal((2, 2)))
    with pytest.raises(ValueError):
        mu.a[0, 0] = 1.0


@pytest.mark.parametrize(
    "a,w,p,message",
    [
        (np.ones((2, 2)), np.ones((3, 2)), None, "one row per particle"),
        (np.ones(2), np.ones((2, 2)), None, "2-D"),
        (np.ones((2, 2)), np.full((2, 2), np.nan), None, "NaN"),
        (np.ones((2, 2)), np.ones((2, 2)), np.array([1.5, -0.5]), "nonnegative"),
        (np.ones((2, 2)), np.ones((2, 2)), np.array([0.3, 0.3]), "sum to 1"),
        (np.ones((2, 2)), np.ones((2, 2)), np.array([1.0]), "shape"),
        (np.ones((0, 2)), np.ones((0, 2)), None, "at least one"),
        ([["x"]], np.ones((1, 2)), None, "numeric"),
    ],
)
def test_invalid_measures_raise_value_errors_naming_the_problem(a, w, p, message):
    with pytest.raises(ValueError, match=message):
        ParticleMeasure(a, w, p)


def test_load_refuses_pickled_arrays(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, a=np.array([object()], dtype=object), w=np.ones((1, 2)))
    with pytest.raises(ValueError, match="pickle"):
        ParticleMeasure.load(path)


def test_load_names_missing_arrays_and_files(tmp_path):
    np.savez(tmp_path / "m.npz", a=np.ones((2, 2)))
    with pytest.raises(ValueError, match="lacks array"):
        ParticleMeasure.load(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="does not exist"):
        ParticleMeasure.load(tmp_path / "absent.npz")
