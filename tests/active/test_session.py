"""The sequential query loop and the session API: no repeats, pools, simulated users."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vpl.active import (
    ActiveSession,
    CandidatePool,
    queries_to_reach,
    run_active,
    shared_pool,
)
from vpl.models.latent import gaussian_draws


@pytest.mark.parametrize("strategy", ["info-gain", "paper"])
def test_low_rank_active_loop(trained_low_rank, linear_users, strategy: str) -> None:
    _, test = linear_users
    res = run_active(trained_low_rank, test, strategy, budget=6, eval_pairs=10, pool_size=12,
                     users=list(range(4)), progress=False)
    assert res.accuracy.shape == (4, 7) and not np.isnan(res.accuracy).any()
    for asked in res.asked:
        assert len(set(asked)) == 6
    if trained_low_rank.uses_bank:
        return
    # answers never widen the Laplace posterior beyond the prior (Hessian >= prior precision)
    assert (res.variance[:, 1:] <= res.variance[:, :1] + 1e-6).all()
    assert (res.variance[:, -1] < res.variance[:, 0]).all()


@pytest.mark.parametrize("strategy", ["random", "info-gain", "epig", "paper"])
@pytest.mark.parametrize("batch", [1, 3])
def test_sequential_loop_never_reasks(trained, linear_users, strategy: str, batch: int) -> None:
    _, test = linear_users
    res = run_active(trained, test, strategy, budget=8, batch=batch, eval_pairs=10, pool_size=12,
                     users=list(range(6)), progress=False)
    assert res.accuracy.shape == (6, 9) and not np.isnan(res.accuracy).any()
    # predictive entropy of the evaluation pairs: binary entropies, in [0, log 2]
    assert res.predictive_entropy is not None and res.predictive_entropy.shape == (6, 9)
    assert (res.predictive_entropy >= 0).all() and (res.predictive_entropy <= math.log(2)).all()
    corr = res.to_dict()["predictive_entropy_accuracy_spearman"]
    assert corr is None or math.isnan(corr) or -1.0 <= corr <= 1.0
    for asked in res.asked:
        assert len(asked) == 8 and len(set(asked)) == 8
    # evaluation pairs are never queried
    for u, asked in enumerate(res.asked):
        assert set(asked).issubset(set(test.by_user()[u].tolist()))


def test_session_exhausts_pool_without_repeats(trained, linear_users) -> None:
    _, test = linear_users
    pool = CandidatePool.from_pairs(test, test.by_user()[0][:7])
    session = ActiveSession(trained, pool, strategy="info-gain", seed=0)
    seen = []
    while session.remaining:
        q = session.next_query()
        seen.append(q)
        session.answer(q, 1)
    assert sorted(seen) == list(range(7))
    with pytest.raises(IndexError):
        session.next_query()


def test_api_round_trip(trained, linear_users) -> None:
    _, test = linear_users
    idx = test.by_user()[1]
    session = ActiveSession(trained, test.subset(idx), strategy="info-gain", seed=3)
    prior = session.uncertainty()
    q = session.next_query()
    assert 0 <= q < len(idx)
    session.answer(q, True)
    with pytest.raises(ValueError):
        session.answer(q, False)
    z = session.latent()
    assert z.shape == (trained.latent_dim,)
    # the latent is the model's posterior mean for exactly the answered comparison
    x = torch.from_numpy(test.items)
    post = trained.infer(x[test.chosen[idx[q]]].view(1, 1, -1),
                         x[test.rejected[idx[q]]].view(1, 1, -1), torch.ones(1, 1, dtype=bool))
    torch.testing.assert_close(z, post.mean[0])
    batch = session.next_batch(3)
    assert len(set(batch)) == 3 and q not in batch
    for b in batch:
        session.answer(b, 0)
    pred = session.predict()
    assert pred.prob.shape == (len(idx),) and (pred.mutual_info >= 0).all()
    assert set(prior) == {"entropy", "variance"}
    assert gaussian_draws(session.posterior(), 7).shape == (7, trained.latent_dim)


def test_queries_to_reach() -> None:
    assert queries_to_reach([0.5, 0.6, 0.8, 0.9], 0.8) == 2
    assert queries_to_reach([0.5, 0.6], 0.8) is None


def test_shared_pool_leaves_out_evaluation_items_and_ties(linear_users, linear_oracle) -> None:
    _, test = linear_users
    rng = np.random.default_rng(0)
    ev = test.by_user()[3][:10]
    margins = linear_oracle(test, 3)
    margins[:50] = 0.0  # indifferent about these
    idx, wins = shared_pool(test, ev, margins, 300, rng)
    assert len(idx) == 300 and len(set(idx.tolist())) == 300
    ev_items = set(test.chosen[ev].tolist()) | set(test.rejected[ev].tolist())
    assert not ev_items & (set(test.chosen[idx].tolist()) | set(test.rejected[idx].tolist()))
    assert (idx >= 50).all()
    np.testing.assert_array_equal(wins, margins[idx] > 0)
    # the user's own recorded pairs agree with the oracle, other types' pairs often do not
    own = test.by_user()[3]
    assert (linear_oracle(test, 3)[own] > 0).all()
    assert (linear_oracle(test, 3)[test.by_user()[4]] < 0).mean() > 0.2


def test_active_loop_with_a_simulated_user(trained, linear_users, linear_oracle) -> None:
    _, test = linear_users
    res = run_active(trained, test, "info-gain", budget=6, eval_pairs=10, pool_size=200,
                     users=[0, 1, 2, 3], progress=False, oracle=lambda u: linear_oracle(test, u))
    own = run_active(trained, test, "info-gain", budget=6, eval_pairs=10, pool_size=12,
                     users=[0, 1, 2, 3], progress=False)
    assert res.config["pool"] == "shared" and own.config["pool"] == "own"
    np.testing.assert_array_equal(res.accuracy[:, 0], own.accuracy[:, 0])  # same eval pairs
    by_user = test.by_user()
    for row, asked in enumerate(res.asked):
        assert len(asked) == 6 and len(set(asked)) == 6
        # queries come from the whole data, mostly other users' pairs
        assert not set(asked) <= set(by_user[row].tolist())
    assert not np.isnan(res.accuracy).any()
