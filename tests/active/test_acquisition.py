"""Acquisition: information gain (exact toy values), EPIG, particles and the fast paths."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from vpl.active import (
    CandidatePool,
    candidate_logits,
    info_gain,
    latent_particles,
    reward_matrix,
    select_queries,
)
from vpl.models import Posterior, build
from vpl.models.latent import LatentRewardModel
from vpl.train import TrainConfig, fit


@dataclass(frozen=True)
class _ToyConfig:
    mean: float = 0.5
    std: float = 1.2


class ToyLatent(LatentRewardModel):
    """1-D latent with an exact Gaussian posterior N(mean, std^2) and reward r(x, z) = x0 z + x1."""

    name = "toy-latent"
    Config = _ToyConfig
    latent_dim = 1

    def __init__(self, input_dim: int, config: _ToyConfig) -> None:
        super().__init__(input_dim, config)
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def infer(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
              ctx_mask: torch.Tensor) -> Posterior:
        b = ctx_chosen.shape[0]
        mean = torch.full((b, 1), self.config.mean)
        return Posterior(mean, torch.full((b, 1), 2 * math.log(self.config.std)))

    @property
    def item_part_weight(self) -> torch.Tensor:
        return self.anchor

    def item_part(self, items: torch.Tensor) -> torch.Tensor:
        return items[:, :2]

    def reward_table(self, item_part: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z[:, :1] * item_part[:, 0] + item_part[:, 1]  # (S, U)

    def reward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return x[..., 0] * z[:, None, 0] + x[..., 1]


def _exact_bald(a: float, b: float, m: float, s: float) -> float:
    """I(z; y) for p(y=1|z) = sigmoid(a z + b), z ~ N(m, s^2), by Gauss-Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    p = 1 / (1 + np.exp(-(a * (m + s * x) + b)))
    def h(q: np.ndarray) -> np.ndarray:
        q = np.clip(q, 1e-300, 1 - 1e-16)
        return -(q * np.log(q) + (1 - q) * np.log1p(-q))
    return float(h(np.sum(w * p)) - np.sum(w * h(p)))


def test_info_gain_nonnegative_and_zero_when_label_known() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 200, generator=g) * 3 + torch.randn(200, generator=g)
    known = torch.full((64, 1), 25.0)  # every posterior sample agrees: label 1, p ~ 1
    flat = torch.full((64, 1), -0.7)  # uncertain label, but z does not matter
    ig = info_gain(torch.cat([logits, known, flat], 1))
    assert (ig >= 0).all()
    assert ig[-2] < 1e-9 and ig[-1] < 1e-6
    assert ig[:-2].max() > 0.05
    # the unclamped scores of the selection core are non-negative too
    model = ToyLatent(2, _ToyConfig())
    pool = CandidatePool.from_vectors(torch.randn(50, 2, generator=g),
                                      torch.randn(50, 2, generator=g))
    _, scores = select_queries(model, pool, torch.zeros(0, 2), torch.zeros(0, 2), "info-gain",
                               samples=256, generator=g)
    assert (scores >= -1e-6).all()


def test_info_gain_zero_when_reward_ignores_latent(linear_users) -> None:
    train, _ = linear_users
    model = build("vpl", train.dim, latent_dim=4, hidden=16, layers=1, latent_mode="head")
    with torch.no_grad():
        model.head_from_z.weight.zero_()
    pool = CandidatePool.from_pairs(train, np.arange(30))
    _, scores = select_queries(model, pool, torch.zeros(0, train.dim), torch.zeros(0, train.dim),
                               "info-gain", samples=64)
    assert scores.abs().max() < 1e-5


def test_info_gain_matches_closed_form_on_exact_posterior() -> None:
    cfg = _ToyConfig(mean=0.5, std=1.2)
    model = ToyLatent(2, cfg)
    # candidate n: first item (a, b), second item (0, 0) -> logit a z + b
    ab = np.array([[0.0, 1.0], [1.0, 0.0], [3.0, -1.0], [-2.0, 0.5], [0.3, 4.0], [8.0, -4.0]],
                  dtype=np.float32)
    pool = CandidatePool.from_vectors(ab, np.zeros_like(ab))
    g = torch.Generator().manual_seed(1)
    _, est = select_queries(model, pool, torch.zeros(0, 2), torch.zeros(0, 2), "info-gain",
                            samples=40000, generator=g)
    exact = np.array([_exact_bald(a, b, cfg.mean, cfg.std) for a, b in ab])
    assert exact[0] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(est.numpy(), exact, atol=6e-3)
    assert int(est.argmax()) == int(exact.argmax())


def test_fast_paths_equal_model_calls(linear_users) -> None:
    train, _ = linear_users
    g = torch.Generator().manual_seed(0)
    items = torch.from_numpy(train.items[:40])
    for mode in ("concat", "head"):
        model = build("vpl", train.dim, latent_dim=3, hidden=16, layers=2, latent_mode=mode)
        z = torch.randn(5, 3, generator=g)
        slow = model.reward(items.unsqueeze(0).expand(5, -1, -1), z)
        torch.testing.assert_close(reward_matrix(model, items, z), slow, atol=1e-5, rtol=1e-5)
    ca, cb = items[:3], items[3:6]
    ea, eb = items[6:18].view(4, 3, -1), items[18:30].view(4, 3, -1)
    fast = model.extended_posteriors(ca, cb, ea, eb)
    full = model.encode(torch.cat([ca.expand(4, -1, -1), ea], 1),
                        torch.cat([cb.expand(4, -1, -1), eb], 1), torch.ones(4, 6, dtype=bool))
    torch.testing.assert_close(fast.mean, full.mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.logvar, full.logvar, atol=1e-5, rtol=1e-5)
    low_rank = build("low-rank", train.dim, rank=3)
    slow = low_rank.reward(items.unsqueeze(0).expand(5, -1, -1), z)
    torch.testing.assert_close(reward_matrix(low_rank, items, z), slow, atol=1e-5, rtol=1e-5)


def test_low_rank_laplace_samples(trained_low_rank, linear_users) -> None:
    """Particles of a low-rank model: its bank, or its full-covariance Laplace posterior."""
    _, test = linear_users
    idx = test.by_user()[0][:5]
    x = torch.from_numpy(test.items)
    ca, cb = x[test.chosen[idx]], x[test.rejected[idx]]
    model = trained_low_rank.eval()
    if model.uses_bank:
        z, weights = latent_particles(model, ca, cb, 16, torch.Generator().manual_seed(1))
        assert torch.equal(z, model.bank.latents)
        expect = model.bank_weights(ca.unsqueeze(0), cb.unsqueeze(0), torch.ones(1, 5, dtype=bool))
        torch.testing.assert_close(weights, expect[0])
        return
    w, hess = model.fit_weights(ca.unsqueeze(0), cb.unsqueeze(0), torch.ones(1, 5, dtype=bool))
    draws, _ = model.particles(ca, cb, 20000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(draws.mean(0), w[0], atol=1e-5, rtol=0)  # antithetic: exact
    cov = torch.linalg.inv(hess[0])
    torch.testing.assert_close(torch.cov(draws.T), cov, atol=0.05 * cov.diag().max().item(),
                               rtol=0)
    z, weights = latent_particles(model, ca, cb, 16, torch.Generator().manual_seed(1))
    assert z.shape == (16, 3) and torch.allclose(weights.sum(), torch.tensor(1.0))


def test_bank_particles_weighted_info_gain(linear_users) -> None:
    """With a latent bank, info-gain is BALD over the bank weighted by the posterior."""
    from vpl.active.acquisition import latent_particles

    train, test = linear_users
    torch.manual_seed(0)
    model = build("vpl", train.dim, latent_dim=2, hidden=16, layers=1, bank_size=8)
    fit(model, train, config=TrainConfig(epochs=1, seed=0), progress=False)
    assert model.uses_bank and model.bank.latents.shape == (8, 2)
    pool = CandidatePool.from_pairs(test, test.by_user()[0][:20])
    a = pool.items[pool.first[:3]]
    b = pool.items[pool.second[:3]]
    z, w = latent_particles(model, a, b, samples=4)
    assert torch.equal(z, model.bank.latents)
    assert torch.allclose(w.sum(), torch.tensor(1.0))
    p = torch.sigmoid(candidate_logits(model, pool, z))  # (M, N)
    h = lambda q: -(q * q.log() + (1 - q) * (1 - q).log())  # noqa: E731
    expected = h(w @ p) - w @ h(p)
    _, scores = select_queries(model, pool, a, b, "info-gain")
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-4)
    assert (scores >= -1e-7).all()
    # larger banks are resampled: at most max_particles distinct draws, weights summing to 1
    z2, w2 = latent_particles(model, a, b, samples=4, max_particles=3,
                              generator=torch.Generator().manual_seed(0))
    assert z2.shape[0] <= 3 and torch.allclose(w2.sum(), torch.tensor(1.0))


def test_candidate_logits_carry_the_models_label_noise(linear_users):
    """With label noise eps, no answer is ever certain: every label probability lies in
    [eps, 1 - eps], so a query the latent decides still leaves eps of aleatoric entropy."""
    train, test = linear_users
    eps = 0.1
    torch.manual_seed(0)
    model = build("vpl", train.dim, latent_dim=2, hidden=16, layers=1, label_noise=eps)
    fit(model, train, config=TrainConfig(epochs=1, seed=0), progress=False)
    pool = CandidatePool.from_pairs(test, test.by_user()[0][:20])
    z = model.bank.latents
    raw = reward_matrix(model, pool.items, z)
    raw = raw[:, pool.first] - raw[:, pool.second]
    p = torch.sigmoid(candidate_logits(model, pool, z))
    torch.testing.assert_close(p, eps + (1 - 2 * eps) * torch.sigmoid(raw))


def _brute_epig(p1: np.ndarray, t1: np.ndarray, w: np.ndarray, chosen: list[int]) -> np.ndarray:
    """Mean over targets m of I((y_chosen, y_n); y_m), by enumerating every joint labeling."""
    s, n = p1.shape
    out = np.zeros(n)
    for cand in range(n):
        qs = chosen + [cand]
        mis = []
        for m in range(t1.shape[1]):
            joint = {}
            for ys in np.ndindex(*([2] * (len(qs) + 1))):
                pz = w.copy()
                for q, y in zip(qs, ys[:-1], strict=True):
                    pz = pz * (p1[:, q] if y else 1 - p1[:, q])
                pz = pz * (t1[:, m] if ys[-1] else 1 - t1[:, m])
                joint[ys] = pz.sum()
            px, py = {}, {}
            for ys, v in joint.items():
                px[ys[:-1]] = px.get(ys[:-1], 0.0) + v
                py[ys[-1]] = py.get(ys[-1], 0.0) + v
            mis.append(sum(v * math.log(v / (px[ys[:-1]] * py[ys[-1]]))
                           for ys, v in joint.items() if v > 0))
        out[cand] = np.mean(mis)
    return out


def test_epig_matches_enumeration_and_vanishes_without_latent_dependence() -> None:
    from vpl.active.acquisition import predictive_info_gain

    g = torch.Generator().manual_seed(3)
    p1 = torch.sigmoid(torch.randn(7, 5, generator=g, dtype=torch.float64) * 2)
    t1 = torch.sigmoid(torch.randn(7, 4, generator=g, dtype=torch.float64) * 2)
    w = torch.softmax(torch.randn(7, generator=g, dtype=torch.float64), 0)
    got = predictive_info_gain(p1, t1, w)
    np.testing.assert_allclose(got.numpy(), _brute_epig(p1.numpy(), t1.numpy(), w.numpy(), []),
                               atol=1e-10)
    assert (got >= 0).all() and got.max() > 1e-3
    # with two labels already chosen for the batch: their joint configurations enter
    pj = torch.stack([p1[:, 0] * p1[:, 2], p1[:, 0] * (1 - p1[:, 2]),
                      (1 - p1[:, 0]) * p1[:, 2], (1 - p1[:, 0]) * (1 - p1[:, 2])], 1)
    np.testing.assert_allclose(predictive_info_gain(p1, t1, w, pj).numpy(),
                               _brute_epig(p1.numpy(), t1.numpy(), w.numpy(), [0, 2]),
                               atol=1e-10)
    # labels that do not depend on z (same probability under every latent) carry nothing
    flat = p1[:1].expand(7, -1)
    assert predictive_info_gain(flat, t1, w).abs().max() < 1e-12
    # nor does a candidate about which the latents disagree, when no target depends on z
    assert predictive_info_gain(p1, t1[:1].expand(7, -1), w).abs().max() < 1e-12


def test_epig_prefers_the_query_that_moves_predictions() -> None:
    """Latents 0, 1 form cluster A and 2, 3 cluster B, and every target depends only on the
    cluster. Candidate 0 splits A from B; candidate 1 splits each cluster in two. BALD values
    both alike (each halves the latents); EPIG values only candidate 0."""
    from vpl.active.acquisition import info_gain, predictive_info_gain

    hi, lo = 0.95, 0.05
    p1 = torch.tensor([[hi, hi], [hi, lo], [lo, hi], [lo, lo]], dtype=torch.float64)
    t1 = torch.tensor([[hi, lo, hi], [hi, lo, hi], [lo, hi, lo], [lo, hi, lo]],
                      dtype=torch.float64)
    w = torch.full((4,), 0.25, dtype=torch.float64)
    bald = info_gain(torch.logit(p1), w)
    torch.testing.assert_close(bald[0], bald[1])
    epig = predictive_info_gain(p1, t1, w)
    assert epig[0] > 0.2 and epig[1].abs() < 1e-12
