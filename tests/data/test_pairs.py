"""Embedded comparisons and the padded batches models read."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vpl.data.pairs import PairData, build_batch


def test_batch_builder_pads_with_zeros(linear_users):
    train, _ = linear_users
    t = np.array([[0, 1], [2, -1]])
    c = np.array([[3, -1, -1], [4, 5, 6]])
    b = build_batch(train, t, train, c)
    assert b.ctx_mask.tolist() == [[True, False, False], [True, True, True]]
    assert b.target_mask.tolist() == [[True, True], [True, False]]
    assert float(b.ctx_chosen[0, 1:].abs().sum()) == 0.0
    assert torch.equal(b.chosen[0, 0], torch.from_numpy(train.items[train.chosen[0]]))


def test_distinct_context_pairs_fill_the_same_slots(linear_users):
    train, _ = linear_users
    c = np.array([[3, 4, -1], [4, 5, 3], [5, -1, -1]])
    b = build_batch(train, np.array([[0], [1], [2]]), train, c, distinct=True).to("cpu")
    chosen, rejected = b.ctx_distinct
    assert len(chosen) == 3  # pairs 3, 4 and 5, once each
    assert torch.equal(chosen[b.ctx_slot][b.ctx_mask], b.ctx_chosen[b.ctx_mask])
    assert torch.equal(rejected[b.ctx_slot][b.ctx_mask], b.ctx_rejected[b.ctx_mask])
    plain = build_batch(train, np.array([[0], [1], [2]]), train, c)
    assert plain.ctx_slot is None and plain.ctx_distinct is None
    assert torch.equal(plain.ctx_chosen, b.ctx_chosen)
    empty = build_batch(train, np.array([[0]]), train, np.zeros((1, 0), dtype=np.int64),
                        distinct=True)
    assert empty.ctx_distinct is None  # nothing to share


def test_pair_data_groups_by_user_and_subsets_keep_items_and_users():
    data = PairData(items=np.eye(6), user=[1, 0, 1, 1], chosen=[0, 1, 2, 3], rejected=[4, 5, 4, 5],
                    users=["a", "b"], pair_keys=["k0", "k1", "k2", "k3"])
    assert data.items.dtype == np.float32 and data.user.dtype == np.int64
    assert len(data) == 4 and data.dim == 6
    np.testing.assert_array_equal(data.item_keys, np.arange(6))  # default: every item distinct
    assert {u: ix.tolist() for u, ix in data.by_user().items()} == {0: [1], 1: [0, 2, 3]}
    sub = data.subset(np.array([3, 1]))
    assert sub.items is data.items and sub.users == ["a", "b"]
    assert sub.chosen.tolist() == [3, 1] and sub.pair_keys == ["k3", "k1"]
    assert {u: ix.tolist() for u, ix in sub.by_user().items()} == {0: [1], 1: [0]}
    assert data.user_type_of(0) is None
    with pytest.raises(ValueError, match="same length"):
        PairData(items=np.eye(3), user=[0, 0], chosen=[0], rejected=[1], users=["a"])
