"""Seeded splits by user: unseen test users, and held-out pairs of the seen users."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from vpl.data.io import atomic_write_text
from vpl.data.pairs import PairData
from vpl.data.schema import Comparison

log = logging.getLogger(__name__)

MIN_USERS_FOR_TEST_SPLIT = 5


@dataclass
class Split:
    """Which users are unseen at training, and which pairs of seen users are held out."""

    seed: int
    test_users: list[str] = field(default_factory=list)
    heldout_pairs: list[str] = field(default_factory=list)  # Comparison.key values

    def partition(self, records: list[Comparison]
                  ) -> tuple[list[Comparison], list[Comparison], list[Comparison]]:
        """(train, held-out pairs of seen users, all pairs of unseen users)."""
        test_users, heldout = set(self.test_users), set(self.heldout_pairs)
        train, val, test = [], [], []
        for r in records:
            if r.user_id in test_users:
                test.append(r)
            elif r.key in heldout:
                val.append(r)
            else:
                train.append(r)
        return train, val, test

    def save(self, path: str | os.PathLike) -> None:
        """Write the split as JSON (atomically)."""
        atomic_write_text(path, json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Split:
        """Read a split written by `save`."""
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
        return cls(seed=int(raw["seed"]), test_users=list(raw["test_users"]),
                   heldout_pairs=list(raw["heldout_pairs"]))


def make_split(records: list[Comparison], *, test_users: float = 0.2, heldout_pairs: float = 0.2,
               seed: int = 0) -> Split:
    """Pick a fraction of users as unseen test users and a fraction of each seen user's pairs.

    With fewer than 5 users (e.g. two annotator types) no user is held out; only pairs are.
    """
    if not 0.0 <= test_users < 1.0 or not 0.0 <= heldout_pairs < 1.0:
        raise ValueError("split fractions must be in [0, 1)")
    rng = np.random.default_rng(seed)
    users = sorted({r.user_id for r in records})
    n_test = int(round(test_users * len(users)))
    if len(users) < MIN_USERS_FOR_TEST_SPLIT and n_test:
        log.info("only %d users: holding out pairs, not users", len(users))
        n_test = 0
    test = sorted(rng.choice(users, size=n_test, replace=False).tolist()) if n_test else []
    test_set = set(test)
    by_user: dict[str, list[str]] = {}
    for r in records:
        if r.user_id not in test_set:
            by_user.setdefault(r.user_id, []).append(r.key)
    held: list[str] = []
    for u in sorted(by_user):
        keys = sorted(set(by_user[u]))
        n = int(round(heldout_pairs * len(keys)))
        if n and len(keys) - n >= 1:
            held.extend(rng.choice(keys, size=n, replace=False).tolist())
    return Split(seed=seed, test_users=test, heldout_pairs=sorted(held))


def split_indices(data: PairData, *, test_users: float = 0.2, heldout_pairs: float = 0.2,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`make_split` for indexed comparisons (e.g. a memory-mapped store), vectorized: pair
    indices (train, held-out pairs of seen users, pairs of unseen users). A seeded share of the
    users (none below 5 users) is unseen; of every seen user, a share of the pairs (rounded, at
    least one left for training) is held out."""
    if not 0.0 <= test_users < 1.0 or not 0.0 <= heldout_pairs < 1.0:
        raise ValueError("split fractions must be in [0, 1)")
    rng = np.random.default_rng(seed)
    present = np.unique(data.user)
    n_test = int(round(test_users * len(present)))
    if len(present) < MIN_USERS_FOR_TEST_SPLIT:
        n_test = 0
    unseen = np.zeros(len(data.users), dtype=bool)
    unseen[rng.choice(present, size=n_test, replace=False)] = True
    is_test = unseen[data.user]
    # each seen user's pairs in a random order; the first round(share * count) are held out
    order = np.lexsort((rng.random(len(data)), data.user))
    count = np.bincount(data.user, minlength=len(data.users))
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    rank = np.empty(len(data), dtype=np.int64)
    rank[order] = np.arange(len(data)) - start[data.user[order]]
    n_held = np.round(heldout_pairs * count).astype(np.int64)
    n_held = np.where(count - n_held >= 1, n_held, 0)
    held = ~is_test & (rank < n_held[data.user])
    return (np.flatnonzero(~is_test & ~held), np.flatnonzero(held), np.flatnonzero(is_test))
