"""95% confidence intervals of means and proportions."""

from __future__ import annotations

import numpy as np
import pytest

from vpl.stats import t_halfwidth as _ci


def test_ci_matches_t_interval():
    # n=3, sd=1: 4.303 * 1 / sqrt(3)
    assert _ci([1.0, 2.0, 3.0]) == pytest.approx(4.3027 / np.sqrt(3), rel=1e-3)
    assert _ci([0.7]) == 0.0


def test_t_halfwidth_is_the_student_t_interval():
    from scipy import stats

    values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    sd = np.std(values, ddof=1)
    want = stats.t.ppf(0.975, len(values) - 1) * sd / np.sqrt(len(values))
    assert _ci(values) == pytest.approx(want, rel=1e-12)
    assert _ci(values) == pytest.approx(2.364624 * sd / np.sqrt(8), rel=1e-5)  # t(0.975, 7)
    # two values 0 and 2: sd = sqrt(2), so the half-width is t(0.975, 1) = 12.706
    assert _ci([0.0, 2.0]) == pytest.approx(12.7062, rel=1e-4)
    assert _ci(np.array([[1.0, 2.0], [3.0, 4.0]])) == pytest.approx(_ci([1.0, 2.0, 3.0, 4.0]))
    assert _ci([]) == 0.0 and _ci([5.0, 5.0, 5.0]) == 0.0


def test_t_halfwidth_ignores_values_that_are_not_finite():
    assert _ci([1.0, 2.0, 3.0, float("nan"), float("inf")]) == _ci([1.0, 2.0, 3.0])
    assert _ci([float("nan"), 0.4]) == 0.0  # one finite value left


def test_binomial_halfwidth():
    from vpl.stats import binomial_halfwidth

    assert binomial_halfwidth(0.5, 100) == pytest.approx(1.96 * 0.05)
    assert binomial_halfwidth(0.8, 40) == pytest.approx(1.96 * np.sqrt(0.8 * 0.2 / 40))
    assert binomial_halfwidth(0.0, 10) == 0.0 and binomial_halfwidth(1.0, 10) == 0.0
    assert binomial_halfwidth(0.5, 0) == pytest.approx(0.98)  # n < 1 counts as one trial


def test_mean_ci_along_either_axis():
    from vpl.stats import mean_ci

    x = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 13.0], [6.0, 7.0]])
    lo, hi = mean_ci(x)
    np.testing.assert_allclose((lo + hi) / 2, [3.0, 10.0])
    np.testing.assert_allclose((hi - lo) / 2, 1.96 * x.std(0, ddof=1) / 2.0)
    lo1, hi1 = mean_ci(x, axis=1)
    np.testing.assert_allclose((lo1 + hi1) / 2, x.mean(1))
    np.testing.assert_allclose((hi1 - lo1) / 2, 1.96 * x.std(1, ddof=1) / np.sqrt(2))
    lo_one, hi_one = mean_ci(x[:1])  # a single sample: no width
    np.testing.assert_array_equal(lo_one, x[0])
    np.testing.assert_array_equal(hi_one, x[0])
