"""Seeded splits by user: unseen test users and held-out pairs."""

from __future__ import annotations

from vpl.data.schema import Comparison
from vpl.data.split import Split, make_split


def _records(n_users=20, per_user=10):
    return [Comparison(f"u{u}", "p", f"c{u}-{i}", f"r{u}-{i}") for u in range(n_users)
            for i in range(per_user)]


def test_split_is_reproducible_and_saved(tmp_path):
    recs = _records()
    a, b = make_split(recs, seed=1), make_split(recs, seed=1)
    assert a == b and make_split(recs, seed=2) != a
    assert len(a.test_users) == 4
    train, val, test = a.partition(recs)
    assert {r.user_id for r in test} == set(a.test_users)
    assert not {r.user_id for r in train} & set(a.test_users)
    assert len(val) == 16 * 2  # 20% of each seen user's 10 pairs
    a.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == a


def test_split_with_few_users_holds_out_pairs_only():
    s = make_split(_records(n_users=2), seed=0)
    assert s.test_users == [] and len(s.heldout_pairs) == 4
