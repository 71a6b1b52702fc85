"""Recommender baselines on identity codes: item popularity and ALS with fold-in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vpl.data.pairs import PairData
from vpl.embed.identity import fit_identity
from vpl.evaluate import evaluate_pairs
from vpl.models import build_for
from vpl.train import TrainConfig, fit


def _two_tastes(n_users: int, seed: int, n_items: int = 30) -> PairData:
    """Two groups of users who rank the same shared items in opposite orders (even users by
    `worth`, odd users by -`worth`), plus a common liking of item 0."""
    rng = np.random.default_rng(seed)
    worth = np.random.default_rng(5).normal(size=n_items)
    items = np.random.default_rng(6).normal(size=(n_items, 4)).astype(np.float32)
    user, ch, rj = [], [], []
    for u in range(n_users):
        sign = 1 if u % 2 == 0 else -1
        for _ in range(30):
            a, b = rng.choice(n_items, 2, replace=False)
            if sign * worth[a] < sign * worth[b]:
                a, b = b, a
            user.append(u)
            ch.append(a)
            rj.append(b)
    return PairData(items=items, user=np.array(user), chosen=np.array(ch),
                    rejected=np.array(rj), users=[f"u{i}" for i in range(n_users)],
                    item_keys=np.arange(n_items) + 10)


@pytest.fixture(scope="module")
def coded():
    train, test = _two_tastes(40, 0), _two_tastes(12, 1)
    ident = fit_identity(train)
    return ident.apply(train), ident.apply(test)


def _trained(name: str, train: PairData):
    torch.manual_seed(0)
    model = build_for(name, train)
    res = fit(model, train, None, TrainConfig(epochs=15, seed=0, patience=15), progress=False)
    return model, res


def test_baselines_need_recurring_items():
    with pytest.raises(ValueError, match="recur"):
        build_for("item-bt", _two_tastes(4, 0))


def test_item_bt_is_the_same_for_everyone_and_ignores_text(coded):
    train, test = coded
    model, _ = _trained("item-bt", train)
    k0 = evaluate_pairs(model, test, context_size=0).accuracy
    k8 = evaluate_pairs(model, test, context_size=8).accuracy
    assert k0 == k8 and 0.4 < k0 < 0.6  # opposite halves: popularity is a coin flip
    shifted = test.items.copy()
    shifted[:, :4] += 100.0  # the text part changes nothing
    assert np.allclose(model.reward(torch.from_numpy(shifted)).detach(),
                       model.reward(torch.from_numpy(test.items)).detach())


def test_mf_als_folds_in_new_users_from_their_context(coded):
    train, test = coded
    model, res = _trained("mf-als", train)
    assert res.after_fit["mf_alpha"] > 0
    k0 = evaluate_pairs(model, test, context_size=0).accuracy
    k8 = evaluate_pairs(model, test, context_size=8).accuracy
    assert k8 > k0 + 0.1
