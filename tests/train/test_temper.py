"""The bank temperature: chosen on held-out training users; 0 is the population's prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vpl.data.pairs import PairData
from vpl.evaluate import evaluate_pairs
from vpl.models import build
from vpl.train import TrainConfig, fit
from vpl.train.temper import select_temperature


def _noisy_one_taste(n_users: int, seed: int, flip: float = 0.45) -> PairData:
    """Everyone shares one taste, but each label is flipped with probability `flip`: contexts
    carry no information about the user, only noise."""
    rng = np.random.default_rng(seed)
    items = np.random.default_rng(7).normal(size=(200, 8)).astype(np.float32)
    w = np.random.default_rng(8).normal(size=8)
    user, ch, rj = [], [], []
    for u in range(n_users):
        for _ in range(24):
            a, b = rng.choice(200, 2, replace=False)
            if (items[a] @ w < items[b] @ w) != (rng.random() < flip):
                a, b = b, a
            user.append(u)
            ch.append(a)
            rj.append(b)
    return PairData(items=items, user=np.array(user), chosen=np.array(ch),
                    rejected=np.array(rj), users=[f"u{i}" for i in range(n_users)])


@pytest.fixture(scope="module")
def noisy_vpl():
    train, test = _noisy_one_taste(60, 0), _noisy_one_taste(20, 1)
    torch.manual_seed(0)
    model = build("vpl", train.dim, hidden=32, latent_dim=4, refine_epochs=2, bank_temperature=None)
    res = fit(model, train, None, TrainConfig(epochs=4, seed=0), progress=False)
    return model, train, test, res


def test_fit_chooses_a_temperature_and_reports_the_scores(noisy_vpl):
    model, _, _, res = noisy_vpl
    tau = res.after_fit["bank_temperature"]
    assert tau in (0.0, 0.125, 0.25, 0.5, 1.0)
    assert float(model.bank.temperature) == tau
    lls = {k: v for k, v in res.after_fit.items() if k.startswith("bank_loglik_tau_")}
    assert len(lls) == 5 and max(lls.values()) == lls[f"bank_loglik_tau_{tau:g}"]
    assert model.bank.owners is not None and len(model.bank.owners) == len(model.bank)


def test_zero_temperature_is_the_population_prediction_whatever_the_context(noisy_vpl):
    model, _, test, _ = noisy_vpl
    before = float(model.bank.temperature)
    try:
        model.bank.temperature.fill_(0.0)
        empty = evaluate_pairs(model, test, context_size=0).logits
        full = evaluate_pairs(model, test, context_size=8, seed=3).logits
        assert np.allclose(empty, full, atol=1e-5)
    finally:
        model.bank.temperature.fill_(before)


def test_noise_only_contexts_pick_a_cold_temperature(noisy_vpl):
    model, train, _, _ = noisy_vpl
    info = select_temperature(model, model.bank, train, seed=0)
    assert info["bank_temperature"] <= 0.25  # personalizing on noise loses likelihood
    assert info["bank_loglik_tau_0"] > info["bank_loglik_tau_1"]


def test_fixed_temperature_and_too_few_users(noisy_vpl):
    _, train, _, _ = noisy_vpl
    torch.manual_seed(0)
    model = build("vpl", train.dim, hidden=16, latent_dim=2, refine_epochs=0,
                  bank_temperature=0.5)
    res = fit(model, train, None, TrainConfig(epochs=1, seed=0), progress=False)
    assert float(model.bank.temperature) == 0.5 and "bank_temperature" not in res.after_fit
    assert select_temperature(model, model.bank, train.subset(np.flatnonzero(train.user < 5))) \
        == {}


def test_bank_mixture_prediction_averages_the_banks_probabilities(noisy_vpl):
    model, _, test, _ = noisy_vpl
    from vpl.data.contexts import sample_contexts
    from vpl.data.pairs import build_batch

    mixed = build("vpl", test.dim, hidden=32, latent_dim=4, bank_predict="mixture")
    mixed.load_state_dict(model.state_dict())
    mixed.eval()
    ctx = sample_contexts(test, np.arange(6), test, 4, np.random.default_rng(0))
    batch = build_batch(test, np.arange(6)[:, None], test, ctx)
    with torch.no_grad():
        got = torch.sigmoid(mixed.predict(batch))[:, 0]
        w = mixed.bank_weights(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask)  # (6, M)
        z = mixed.bank.latents
        per = torch.stack([torch.sigmoid(mixed.reward(batch.chosen, zz.expand(6, -1))
                                         - mixed.reward(batch.rejected, zz.expand(6, -1)))[:, 0]
                           for zz in z], 1)  # (6, M)
    assert torch.allclose(got, (w * per).sum(1), atol=1e-5)
