"""DPL likelihoods: mean-variance (probit) and categorical utilities."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from tests.models.helpers import _batch, _make, _replace
from vpl.models.dpl import (
    categorical_win_probs,
    log_odds_from_probs,
    mean_variance_log_probs,
)


def test_meanvar_equal_means_is_one_half():
    mu = torch.tensor([0.3, -2.0])
    log_win, log_lose = mean_variance_log_probs(mu, torch.tensor([0.0, 1.0]), mu,
                                                torch.tensor([-1.0, 2.0]))
    assert torch.allclose(log_win.exp(), torch.full((2,), 0.5))
    assert torch.allclose(log_win - log_lose, torch.zeros(2))


@pytest.mark.parametrize(("mu_c", "s_c", "mu_r", "s_r"),
                         [(1.0, 0.5, 0.0, 1.0), (-0.7, 2.0, 0.4, 0.3), (0.0, 0.1, 9.0, 0.1)])
def test_meanvar_matches_scipy(mu_c, s_c, mu_r, s_r):
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    log_win, log_lose = mean_variance_log_probs(t(mu_c), t(math.log(s_c)), t(mu_r),
                                                t(math.log(s_r)))
    z = (mu_c - mu_r) / math.hypot(s_c, s_r)
    assert math.isclose(float(log_win), norm.logcdf(z), rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(float(log_lose), norm.logcdf(-z), rel_tol=1e-9, abs_tol=1e-12)


def test_meanvar_tail_is_stable():
    # z = -40: Phi(z) underflows in float32, log_ndtr does not
    log_win, log_lose = mean_variance_log_probs(torch.tensor([0.0]), torch.tensor([0.0]),
                                                torch.tensor([40 * math.sqrt(2)]),
                                                torch.tensor([0.0]))
    assert math.isclose(float(log_win), norm.logcdf(-40.0), rel_tol=1e-4)
    assert float(log_lose) == pytest.approx(0.0, abs=1e-6)


def test_meanvar_model_logits_are_probit_log_odds():
    model = _make("dpl-meanvar").eval()
    b = _batch()
    mu_c, ls_c = model.distribution(b.chosen)
    mu_r, ls_r = model.distribution(b.rejected)
    z = ((mu_c - mu_r) / torch.sqrt(torch.exp(2 * ls_c) + torch.exp(2 * ls_r))).detach().double()
    p = torch.from_numpy(norm.cdf(z.numpy()))
    assert torch.allclose(model.predict(b).double(), torch.log(p / (1 - p)), atol=1e-4)
    assert torch.equal(model.predict(_replace(b, rejected=b.chosen)), torch.zeros(4, 3))


def test_categorical_hand_example():
    p_c = torch.tensor([0.2, 0.3, 0.5])
    p_r = torch.tensor([0.5, 0.5, 0.0])
    # P(U_c > U_r) = 0.3 * 0.5 + 0.5 * 1.0 = 0.65; P(tie) = 0.1 + 0.15 = 0.25
    win, lose = categorical_win_probs(p_c, p_r)
    assert float(win) == pytest.approx(0.65 + 0.125)
    assert float(lose) == pytest.approx(0.2 * 0.5 + 0.125)
    assert float(log_odds_from_probs(win, lose)) == pytest.approx(math.log(0.775 / 0.225))


def test_categorical_identical_and_certain():
    p = torch.softmax(torch.randn(5, 7), -1)
    win, lose = categorical_win_probs(p, p)
    assert torch.allclose(win, torch.full((5,), 0.5)) and torch.allclose(lose, win)
    top, bottom = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0])
    win, lose = categorical_win_probs(top, bottom)
    assert float(win) == 1.0 and float(lose) == 0.0
    assert math.isfinite(float(log_odds_from_probs(win, lose)))  # clamped, not inf
