"""Evaluation: accuracy and calibration of pair scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vpl.evaluate import PairScores, context_batches, evaluate_pairs, pair_contexts
from vpl.models import build


def test_calibration_metrics_known_values_and_no_overflow():
    """ECE and NLL of preference probabilities: hand-computed values, and huge logits give
    finite numbers with no overflow warning (the sigmoid is computed in log space)."""
    import warnings

    import numpy as np

    from vpl.evaluate import PairScores

    def scores(logits):
        lg = np.asarray(logits, dtype=float)
        return PairScores(logits=lg, user=np.zeros(len(lg), dtype=np.int64),
                          item_disjoint=np.ones(len(lg), dtype=bool), users=["u"])

    # logit 0: p = 0.5 for both orders, labels 1 and 0 -> bin mean 0.5, error 0
    assert scores([0.0]).ece() == 0.0
    # logit log(3): p = 0.75 (label 1) and 0.25 (label 0); each bin is off by 0.25
    assert abs(scores([np.log(3.0)]).ece() - 0.25) < 1e-12
    assert abs(scores([np.log(3.0)]).nll() - np.log(4.0 / 3.0)) < 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = scores([1000.0, -1000.0])
        assert abs(s.ece() - 0.5) < 1e-12  # confident: one right, one wrong
        assert abs(s.nll() - 500.0) < 1e-9


def test_pair_scores_accuracy_ties_per_user_and_summary():
    s = PairScores(logits=np.array([2.0, -1.0, 0.0, 3.0]), user=np.array([0, 0, 1, 1]),
                   item_disjoint=np.array([True, True, False, False]), users=["a", "b"])
    assert s.correct.tolist() == [1.0, 0.0, 0.5, 1.0]  # a tie counts half
    assert s.accuracy == 0.625 and s.accuracy_item_disjoint == 0.5
    assert s.per_user() == {"a": 0.5, "b": 0.75}
    summ = s.summary()
    assert (summ["n_pairs"], summ["n_pairs_item_disjoint"], summ["n_users"]) == (4, 2, 2)
    assert summ["worst_user_accuracy"] == 0.5 and summ["user_accuracy_std"] == 0.125
    assert summ["nll"] == pytest.approx(np.mean(np.log1p(np.exp(-s.logits))))
    empty = PairScores(np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), [])
    assert np.isnan(empty.accuracy) and np.isnan(empty.accuracy_item_disjoint)


def test_per_user_figures_equal_a_loop_over_the_users():
    # one pass over the pairs (a loop per user was quadratic on a store's 10^5 users)
    from vpl.evaluate import _user_spread

    rng = np.random.default_rng(0)
    user = rng.integers(0, 300, 5000)
    s = PairScores(rng.normal(size=5000).round(1), user, np.ones(5000, dtype=bool),
                   [f"u{i}" for i in range(300)])
    users = np.unique(user)
    assert s.per_user() == {s.users[u]: float(s.correct[user == u].mean()) for u in users}
    means = rng.normal(size=(5000, 4)).astype(np.float32)
    centers, within = _user_spread(means, user)
    np.testing.assert_allclose(centers, np.stack([means[user == u].mean(0) for u in users]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(within, np.stack([means[user == u].var(0) for u in users]).mean(0),
                               rtol=1e-5)


def test_evaluate_pairs_scores_every_pair_with_contexts_of_its_user(linear_users):
    _, test = linear_users
    data = test.subset(np.flatnonzero(test.user < 3))
    torch.manual_seed(0)
    model = build("btl", data.dim, hidden=8)
    items = torch.from_numpy(data.items)
    with torch.no_grad():
        want = (model.reward(items[data.chosen]) - model.reward(items[data.rejected])).double()
    none = evaluate_pairs(model, data, context_size=0)
    np.testing.assert_allclose(none.logits, want.numpy(), rtol=1e-5, atol=1e-6)
    assert none.item_disjoint.all()  # no context shares an item with its target
    assert none.accuracy == pytest.approx(float(np.mean(want.numpy() > 0)))
    with_ctx = evaluate_pairs(model, data, context_size=4, batch_size=7)  # batches split users
    np.testing.assert_allclose(with_ctx.logits, none.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(with_ctx.user, data.user)
    # a pool whose pairs repeat the targets' items: no target is item-disjoint any more
    assert not evaluate_pairs(model, data, pool=data.subset(np.arange(len(data))),
                              context_size=len(data)).item_disjoint.all()


def test_context_batches_keep_a_users_targets_together_and_cover_every_row(linear_users):
    train, _ = linear_users
    data = train.subset(np.random.default_rng(0).permutation(len(train)))  # users interleaved
    ctx, _ = pair_contexts(data, data, 4, seed=0)
    batches = list(context_batches(data, data, ctx, batch_size=16))
    assert all(b.ctx_distinct is None for _, b in batches)  # only for models that read them
    order = np.concatenate([r for r, _ in batches])
    assert sorted(order.tolist()) == list(range(len(data)))
    assert (np.diff(data.user[order]) >= 0).all()
    _, first = next(context_batches(data, data, ctx, batch_size=16, distinct=True))
    assert first.ctx_distinct is not None and first.ctx_slot.shape == first.ctx_mask.shape


def test_large_target_sets_are_scored_in_chunks(linear_users, monkeypatch):
    import vpl.evaluate as ev

    _, test = linear_users
    torch.manual_seed(0)
    btl = build("btl", test.dim, hidden=8)
    vpl = build("vpl", test.dim, latent_dim=3, hidden=16)
    whole = [evaluate_pairs(m, test, context_size=4) for m in (btl, vpl)]
    monkeypatch.setattr(ev, "EVAL_CHUNK", 7)  # every chunk draws its own contexts
    chunked = [evaluate_pairs(m, test, context_size=4) for m in (btl, vpl)]
    np.testing.assert_allclose(chunked[0].logits, whole[0].logits, rtol=1e-5, atol=1e-6)
    assert np.isfinite(chunked[1].logits).all() and len(chunked[1].logits) == len(test)
    # other contexts, so other scores, but as good: every pair scored with its own user's
    assert abs(chunked[1].accuracy - whole[1].accuracy) < 0.1
    assert not np.array_equal(chunked[1].logits, whole[1].logits)
