"""Per-user item effects: offsets for the items of a user's own context, nothing elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vpl.data.contexts import sample_contexts
from vpl.data.pairs import ContextBatch, build_batch
from vpl.evaluate import evaluate_pairs
from vpl.models import build
from vpl.models.effects import context_item_effects


def _batch(ctx_c, ctx_r, tgt_c, tgt_r) -> ContextBatch:
    t = lambda rows: torch.tensor(rows, dtype=torch.float32).unsqueeze(0)  # noqa: E731
    k, n = len(ctx_c), len(tgt_c)
    return ContextBatch(t(ctx_c), t(ctx_r), torch.ones(1, k, dtype=torch.bool), t(tgt_c),
                        t(tgt_r), torch.ones(1, n, dtype=torch.bool), torch.zeros(1).long())


A, B, C, D = [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]


def test_one_newton_step_for_the_items_of_the_context():
    # context: A beat B with probability p = sigmoid(0.4) under the latent
    batch = _batch([A], [B], [A, C, C], [C, B, D])
    p = torch.sigmoid(torch.tensor(0.4))
    s = 2.0
    delta = s * (1 - p) / (1 + s * p * (1 - p))  # A up by delta, B down by delta
    got = context_item_effects(batch, torch.tensor([[0.4]]), s)[0]
    assert torch.allclose(got, torch.stack([delta, delta, torch.tensor(0.0)]), atol=1e-6)


def test_nothing_changes_without_shared_items_or_strength():
    batch = _batch([A], [B], [C], [D])
    assert torch.equal(context_item_effects(batch, torch.tensor([[0.0]]), 4.0),
                       torch.zeros(1, 1))
    shared = _batch([A], [B], [A], [D])
    assert torch.equal(context_item_effects(shared, torch.tensor([[0.0]]), 0.0),
                       torch.zeros(1, 1))
    masked = _batch([A], [B], [A], [D])
    masked.ctx_mask[:] = False  # padding is no evidence
    assert torch.equal(context_item_effects(masked, torch.tensor([[0.0]]), 4.0),
                       torch.zeros(1, 1))


def test_an_item_that_won_and_lost_once_each_at_even_odds_cancels():
    batch = _batch([A, C], [B, A], [A], [D])
    got = context_item_effects(batch, torch.zeros(1, 2), 1.0)
    assert torch.allclose(got, torch.zeros(1, 1), atol=1e-7)


@pytest.fixture(scope="module")
def vpl_with_effects(linear_users):
    train, _ = linear_users
    torch.manual_seed(0)
    model = build("vpl", train.dim, hidden=32, latent_dim=4, refine_epochs=0,
                  bank_temperature=1.0, item_effects=0.0)
    from vpl.train import TrainConfig, fit

    fit(model, train, None, TrainConfig(epochs=2, seed=0), progress=False)
    return model, train


def test_vpl_item_effects_move_only_pairs_that_share_items(vpl_with_effects):
    model, data = vpl_with_effects
    users = data.subset(np.flatnonzero(data.user < 20))
    off = evaluate_pairs(model, users, context_size=8, seed=1)
    model.item_effect.fill_(2.0)
    try:
        on = evaluate_pairs(model, users, context_size=8, seed=1)
    finally:
        model.item_effect.fill_(0.0)
    new = on.item_disjoint
    assert new.sum() > 20 and (~new).sum() > 20
    assert np.allclose(on.logits[new], off.logits[new], atol=1e-6)
    assert not np.allclose(on.logits[~new], off.logits[~new])
    # the context's own pairs, scored as targets, move toward their labels
    ctx = sample_contexts(users, np.arange(50), users, 8, np.random.default_rng(0))
    batch = build_batch(users, ctx, users, ctx)
    base = model.predict(batch)
    model.item_effect.fill_(2.0)
    try:
        up = model.predict(batch)
    finally:
        model.item_effect.fill_(0.0)
    moved = (up - base)[batch.target_mask]
    assert float((moved > 0).float().mean()) > 0.9  # all but items that also lost elsewhere
