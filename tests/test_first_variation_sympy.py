"""The first variation against an independent symbolic derivation (sympy), docs/theory.md §5."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from conftest import exact_landscape

from landscape import ParticleMeasure, Teacher


def test_first_variation_matches_sympy_derivation():
    """d = k = k° = 1, erf, two teacher neurons, two particles, N = ∞, τ > 0.

    L_∞(µ) = ½[Σ_°° + τ² − Σ_µ°²/Σ_µµ] with the closed-form erf kernel; sympy differentiates
    L((1−ε)µ + εδ_θ) in ε at 0.
    """
    x, y = sp.symbols("x y", real=True)
    kappa = sp.Lambda((x, y), 2 / sp.pi * sp.asin(2 * x * y / sp.sqrt((1 + 2 * x**2) * (1 + 2 * y**2))))
    c_t, u_t = [sp.Rational(1), sp.Rational(-1, 2)], [sp.Rational(4, 5), sp.Rational(-3, 2)]
    a_s, w_s, p_s = [sp.Rational(3, 2), sp.Rational(-1, 3)], [sp.Rational(1, 2), sp.Rational(6, 5)], [sp.Rational(1, 3), sp.Rational(2, 3)]
    tau = sp.Rational(1, 4)
    qa, qw = sp.Rational(-7, 10), sp.Rational(9, 10)
    eps = sp.symbols("epsilon")
    weights = [(1 - eps) * p for p in p_s] + [eps]
    a_all, w_all = a_s + [qa], w_s + [qw]
    sigma_mm = sum(weights[i] * weights[j] * a_all[i] * a_all[j] * kappa(w_all[i], w_all[j]) for i in range(3) for j in range(3))
    sigma_mt = sum(weights[i] * a_all[i] * c_t[l] * kappa(w_all[i], u_t[l]) for i in range(3) for l in range(2))
    sigma_tt = sum(c_t[l] * c_t[m] * kappa(u_t[l], u_t[m]) for l in range(2) for m in range(2))
    loss = (sigma_tt + tau**2 - sigma_mt**2 / sigma_mm) / 2
    expected_loss = float(loss.subs(eps, 0).evalf(30))
    expected_fv = float(sp.diff(loss, eps).subs(eps, 0).evalf(30))

    teacher = Teacher(np.array([[1.0], [-0.5]]), np.array([[0.8], [-1.5]]), "erf")
    landscape = exact_landscape(teacher, noise=0.25)
    measure = ParticleMeasure(np.array([[1.5], [-1 / 3]]), np.array([[0.5], [1.2]]), np.array([1 / 3, 2 / 3]))
    a, w, p = measure.tensors()
    assert float(landscape.loss(a, w, p)) == pytest.approx(expected_loss, rel=1e-14)
    fv = landscape.first_variation(a, w, p, torch.tensor([[-0.7]]), torch.tensor([[0.9]]))
    assert float(fv[0]) == pytest.approx(expected_fv, rel=1e-12)
