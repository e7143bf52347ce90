"""The one tolerance helper and the [analysis] settings."""

import pytest
import torch

from landscape.second_order.settings import ANALYSIS_KEYS, AnalysisSettings, tolerance


def test_tolerance_is_a_power_of_eps():
    eps64, eps32 = torch.finfo(torch.float64).eps, torch.finfo(torch.float32).eps
    assert tolerance(torch.float64, 0.5) == pytest.approx(eps64**0.5, rel=1e-15)
    assert tolerance(torch.float32, 1 / 3, factor=10) == pytest.approx(10 * eps32 ** (1 / 3), rel=1e-12)
    # the factor and power are used, not ignored: every argument changes the answer
    assert tolerance(torch.float64, 0.5, 2.0) == 2 * tolerance(torch.float64, 0.5)
    assert tolerance(torch.float64, 0.75) < tolerance(torch.float64, 0.5) < tolerance(torch.float32, 0.5)


@pytest.mark.parametrize("args", [(torch.int64, 0.5), (torch.float64, 0.0), (torch.float64, 0.5, -1.0), ("float64", 0.5)])
def test_tolerance_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        tolerance(*args)


def test_defaults_follow_the_dtype():
    d64, d32 = AnalysisSettings.defaults(torch.float64), AnalysisSettings.defaults(torch.float32)
    assert d64.grad_tol == pytest.approx(1.49e-8, rel=1e-2)
    assert d64.lambda_tol == pytest.approx(6.06e-6, rel=1e-2)
    assert d64.refine_tol == pytest.approx(1.82e-12, rel=1e-2)
    assert d32.grad_tol > 100 * d64.grad_tol
    assert d64.method == "lanczos" and d64.loss_star is None


def test_table_overrides_and_validation():
    s = AnalysisSettings.from_table({"grad_tol": 1e-6, "method": "lobpcg", "eigen_count": 3, "loss_star": 0})
    assert (s.grad_tol, s.method, s.eigen_count, s.loss_star) == (1e-6, "lobpcg", 3, 0.0)
    assert s.lambda_tol == AnalysisSettings.defaults().lambda_tol
    assert set(s.to_dict()) == set(ANALYSIS_KEYS)
    with pytest.raises(ValueError, match="unknown key.*bogus.*zzz"):
        AnalysisSettings.from_table({"bogus": 1, "zzz": 2})
    for bad in ({"grad_tol": -1.0}, {"grad_tol": True}, {"eigen_count": 0}, {"method": "arnoldi"}, {"loss_star": float("nan")}):
        with pytest.raises(ValueError, match=r"\[analysis\]"):
            AnalysisSettings.from_table(bad)
