"""The bank temperature and item effects: chosen on users held out of training; a temperature
of 0 is the population's prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vpl.data.pairs import PairData
from vpl.evaluate import evaluate_pairs
from vpl.models import build
from vpl.models.bank import CONTEXT_SIZES
from vpl.train import TrainConfig, fit
from vpl.train.loop import split_selection_users
from vpl.train.temper import select_item_effects, select_temperature


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
    cfg = TrainConfig(epochs=4, seed=0, selection_min_users=50)  # hold users out of 60
    res = fit(model, train, None, cfg, progress=False)
    return model, train, test, res


def test_fit_chooses_a_temperature_per_context_size_and_reports_the_scores(noisy_vpl):
    model, train, _, res = noisy_vpl
    for j, k in enumerate(CONTEXT_SIZES):
        tau = res.after_fit[f"bank_temperature_k{k}"]
        assert tau in (0.0, 0.125, 0.25, 0.5, 1.0)
        assert float(model.bank.temperature[j]) == tau
        lls = {key: v for key, v in res.after_fit.items()
               if key.startswith(f"bank_loglik_k{k}_tau_")}
        assert len(lls) == 5
        # the best, or no personalization where the best's gain was not significant
        assert tau == 0.0 or max(lls.values()) == lls[f"bank_loglik_k{k}_tau_{tau:g}"]
    # 15% of the 60 users were held out of training for the choice: not in the bank
    assert model.bank.owners is not None and len(model.bank) == 60 - 9
    assert "item_effects" in res.after_fit


def test_selection_users_are_held_out_of_training_and_validation():
    data = _noisy_one_taste(60, 0)
    val = data.subset(np.arange(0, len(data), 10))
    train, kept_val, held = split_selection_users(data, val, 0.15, seed=0, min_users=50)
    held_users = set(np.unique(held.user))
    assert len(held_users) == 9 and not held_users & set(np.unique(train.user))
    assert not held_users & set(np.unique(kept_val.user))
    assert len(train) + len(held) == len(data)
    few = data.subset(np.flatnonzero(data.user < 20))  # below min_users
    assert split_selection_users(few, None, 0.15, seed=0, min_users=50)[2] is None
    assert split_selection_users(data, None, 0.15, seed=0)[2] is None  # default: 500 users


def test_below_the_minimum_users_every_user_trains_and_the_choice_cross_validates():
    train = _noisy_one_taste(60, 0)
    torch.manual_seed(0)
    model = build("vpl", train.dim, hidden=16, latent_dim=2, refine_epochs=0,
                  bank_temperature=None)
    res = fit(model, train, None, TrainConfig(epochs=1, seed=0), progress=False)
    assert len(model.bank) == 60  # nobody held out
    assert all(f"bank_temperature_k{k}" in res.after_fit for k in CONTEXT_SIZES)


def test_zero_temperature_is_the_population_prediction_on_new_items(noisy_vpl):
    model, _, test, _ = noisy_vpl
    before = model.bank.temperature.clone()
    try:
        model.bank.temperature.fill_(0.0)
        empty = evaluate_pairs(model, test, context_size=0).logits
        full = evaluate_pairs(model, test, context_size=8, seed=3)
        new = full.item_disjoint  # item effects change only pairs that share items
        assert new.sum() > 50
        assert np.allclose(empty[new], full.logits[new], atol=1e-5)
    finally:
        model.bank.temperature.copy_(before)


def test_noise_only_contexts_pick_a_cold_temperature_and_no_item_effects(noisy_vpl):
    model, train, _, _ = noisy_vpl
    # 60 held-out users: with 30, the significance test's false positives on pure noise (4 of
    # 96 choices over 8 models trained with 8 or 16 targets a group) can land on a K below
    held = _noisy_one_taste(60, 5)
    info = select_temperature(model, model.bank, train, held_out=held, seed=0)
    for k in (4, 8, 16):  # personalizing on noise earns nothing
        assert info[f"bank_temperature_k{k}"] == 0.0
    assert info["bank_loglik_k16_tau_0"] > info["bank_loglik_k16_tau_1"]
    # labels flipped at random carry nothing about the items either
    before = float(model.item_effect)
    try:
        eff = select_item_effects(model, model.item_effect, train, model.bank, held_out=held)
        assert eff["item_effects"] <= 0.5
        assert eff["item_effects_loglik_0"] > eff["item_effects_loglik_4"]
    finally:
        model.item_effect.fill_(before)


def test_fixed_temperature_and_too_few_users(noisy_vpl):
    _, train, _, _ = noisy_vpl
    torch.manual_seed(0)
    model = build("vpl", train.dim, hidden=16, latent_dim=2, refine_epochs=0,
                  bank_temperature=0.5)
    res = fit(model, train, None, TrainConfig(epochs=1, seed=0), progress=False)
    assert bool((model.bank.temperature == 0.5).all())
    assert not any(k.startswith("bank_temperature") for k in res.after_fit)
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


def test_a_setting_must_earn_its_gain_over_no_personalization():
    from vpl.train.temper import choose

    rng = np.random.default_rng(0)
    base = rng.normal(-0.69, 0.05, size=200)
    noisy = base + rng.normal(0.0005, 0.05, size=200)  # a tiny gain, lost in the noise
    clear = base + 0.02 + rng.normal(0.0, 0.01, size=200)
    assert choose(np.stack([base, noisy]))[0] == 0
    assert choose(np.stack([base, noisy, clear]))[0] == 2
    means = choose(np.stack([base, clear]))[1]
    assert means[1] - means[0] == pytest.approx(0.02, abs=0.003)


def test_a_scorer_follows_the_settings_it_is_reused_across(noisy_vpl):
    """One scorer per batch serves every temperature and item-effect strength tried: each
    call equals a fresh prediction under the settings of that moment."""
    model, _, test, _ = noisy_vpl
    from vpl.data.contexts import sample_contexts
    from vpl.data.pairs import build_batch

    mixed = build("vpl", test.dim, hidden=32, latent_dim=4, bank_predict="mixture")
    mixed.load_state_dict(model.state_dict())
    mixed.eval()
    rows = np.arange(40)
    # contexts drawn from the targets' own user, so they share items with some targets
    ctx = sample_contexts(test, rows, test, 8, np.random.default_rng(0))
    batch = build_batch(test, rows[:, None], test, ctx)
    with torch.no_grad():
        score = mixed.scorer(batch)
        seen = []
        for tau, strength in [(1.0, 0.0), (0.0, 0.0), (0.25, 4.0), (0.25, 0.5), (1.0, 2.0)]:
            mixed.bank.temperature.fill_(tau)
            mixed.item_effect.fill_(strength)
            got = score()
            assert torch.allclose(got, mixed.predict(batch), atol=1e-5)
            seen.append(got.clone())
    # the settings did change the predictions the scorer returned
    assert not torch.allclose(seen[0], seen[1]) and not torch.allclose(seen[2], seen[3])
