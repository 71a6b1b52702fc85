"""Crowd agreement: each rater against the majority of the other raters of the same pair."""

from __future__ import annotations

import numpy as np

from vpl.data.pairs import PairData
from vpl.experiments.ceiling import crowd_agreement


def test_crowd_agreement_counts_the_other_raters_of_each_pair():
    items = np.eye(4, dtype=np.float32)
    # pair (0, 1): users 0 and 1 choose 0, user 2 chooses 1; pair (2, 3): only user 0
    test = PairData(items=items, user=np.array([0, 1, 2, 0]), chosen=np.array([0, 0, 1, 2]),
                    rejected=np.array([1, 1, 0, 3]), users=["a", "b", "c"])
    got = crowd_agreement(test)
    # a: others b (0) and c (1) tie -> 0.5; b: tie -> 0.5; c: others a, b choose 0 -> 0
    assert got["n_pairs"] == 3 and got["coverage"] == 0.75
    assert got["agreement"] == (0.5 + 0.5 + 0.0) / 3
    train = PairData(items=items, user=np.array([0]), chosen=np.array([0]),
                     rejected=np.array([1]), users=["d"])
    with_train = crowd_agreement(test, [train])  # a and b now agree with the majority
    assert with_train["agreement"] == (1.0 + 1.0 + 0.0) / 3
