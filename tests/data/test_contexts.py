"""Vectorized context sampling: distinct, in range, skipping what it must, and uniform."""

from __future__ import annotations

import numpy as np
import pytest

from vpl.data.contexts import (
    first_contexts,
    sample_blocks,
    sample_contexts,
    sample_user_contexts,
    training_batches,
)
from vpl.data.pairs import PairData


def _data(counts: list[int], seed: int = 0) -> PairData:
    rng = np.random.default_rng(seed)
    user = rng.permutation(np.repeat(np.arange(len(counts)), counts))  # users interleaved
    n = len(user)
    return PairData(items=np.eye(2 * n, dtype=np.float32), user=user, chosen=np.arange(n),
                    rejected=np.arange(n, 2 * n), users=[f"u{i}" for i in range(len(counts))])


@pytest.mark.parametrize("n", [6, 200])  # both regimes: sorted keys and redraws
def test_sample_blocks_rows_are_distinct_in_range_and_skip_the_run(n):
    rng = np.random.default_rng(0)
    b = 500
    nn = np.full(b, n)
    k = rng.integers(0, 8, b)
    s = rng.integers(0, n - 2, b)
    ln = rng.integers(0, 3, b)
    pos = sample_blocks(nn, k, rng, width=8, skip_start=s, skip_len=ln)
    for i in range(b):
        row = pos[i][pos[i] >= 0]
        assert len(row) == min(k[i], n - ln[i])
        assert len(set(row.tolist())) == len(row)
        assert ((row >= 0) & (row < n)).all()
        assert not ((row >= s[i]) & (row < s[i] + ln[i])).any()
        assert (pos[i][len(row):] == -1).all()


@pytest.mark.parametrize("n", [5, 300])
def test_sample_blocks_is_uniform(n):
    rng = np.random.default_rng(1)
    reps = 6000
    pos = sample_blocks(np.full(reps, n), np.full(reps, 3), rng, width=3,
                        skip_start=np.full(reps, 1), skip_len=np.full(reps, 1))
    freq = np.bincount(pos.ravel(), minlength=n) / (3 * reps)
    assert freq[1] == 0
    expect = 1.0 / (n - 1)
    sd = np.sqrt(expect * (1 - expect) / (3 * reps))
    assert np.abs(np.delete(freq, 1) - expect).max() < 5 * sd + 1e-9
    # the first slot is as uniform as the others (random order within a row)
    first = np.bincount(pos[:, 0], minlength=n) / reps
    assert np.abs(np.delete(first, 1) - expect).max() < 5 * np.sqrt(expect / reps) + 1e-9


def test_sample_contexts_matches_users_by_name_and_never_includes_the_target():
    data = _data([7, 3, 12, 1])
    rng = np.random.default_rng(0)
    ctx = sample_contexts(data, np.arange(len(data)), data, 4, rng)
    assert ctx.shape == (len(data), 4)
    for p, row in enumerate(ctx):
        row = row[row >= 0]
        assert p not in row and (data.user[row] == data.user[p]).all()
        assert len(row) == min(4, np.sum(data.user == data.user[p]) - 1)
    other = _data([5, 5], seed=3)  # a pool whose user u0 is this data's u0 by name
    ctx = sample_contexts(data, np.arange(len(data)), other, 3, rng)
    for p, row in enumerate(ctx):
        row = row[row >= 0]
        name = data.users[data.user[p]]
        assert all(other.users[u] == name for u in other.user[row])
        assert len(row) == (3 if name in ("u0", "u1") else 0)


def test_training_batches_cover_every_pair_once_with_disjoint_contexts():
    data = _data([12, 9, 1, 30])
    rng = np.random.default_rng(0)
    seen = []
    for b in training_batches(data, users_per_batch=3, targets_per_user=4, context_size=5,
                              rng=rng, variable_context=False):
        for i in range(b.chosen.shape[0]):
            t = b.chosen[i][b.target_mask[i]].argmax(-1).tolist()
            c = b.ctx_chosen[i][b.ctx_mask[i]].argmax(-1).tolist()
            assert not set(t) & set(c)
            assert len(c) == min(5, np.sum(data.user == data.user[t[0]]) - len(t))
            assert len({int(data.user[j]) for j in t + c}) == 1
            seen += t
    assert sorted(seen) == list(range(len(data)))


def test_user_contexts_and_first_contexts():
    data = _data([6, 2, 0, 9])
    rng = np.random.default_rng(0)
    users = np.array([0, 0, 1, 3])
    ctx = sample_user_contexts(data, users, 4, rng, width=5)
    assert ctx.shape == (4, 5)
    for u, row in zip(users, ctx, strict=True):
        row = row[row >= 0]
        assert len(row) == min(4, np.sum(data.user == u)) and (data.user[row] == u).all()
    owners, first = first_contexts(data, 3)
    assert owners.tolist() == [0, 1, 3]
    for u, row in zip(owners, first, strict=True):
        expect = np.flatnonzero(data.user == u)[:3]
        assert row[row >= 0].tolist() == expect.tolist()
