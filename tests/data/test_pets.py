"""The Pets generator: two lexicographic user types."""

from __future__ import annotations

import pytest

from vpl.data.pets import (
    CATEGORIES,
    CONTROVERSIAL_PAIR,
    USER_TYPES,
    generate_pets,
    rank_key,
    sentence_pools,
)

SMALL = {"users_per_type": 10, "test_users_per_type": 5, "pairs_per_user": 20}


def _all(pool: dict[str, tuple[str, ...]]) -> set[str]:
    return {s for sentences in pool.values() for s in sentences}


@pytest.fixture(scope="module")
def pets_full() -> tuple[list[dict], list[dict]]:
    return generate_pets("full", seed=0)


def test_pets_pool_sizes_and_disjoint_split() -> None:
    pools = sentence_pools()
    everything: list[str] = []
    for category in CATEGORIES:
        train, test = _all(pools["train"][category]), _all(pools["test"][category])
        assert len(train) + len(test) >= 100
        assert not train & test
        assert 0.6 < len(train) / (len(train) + len(test)) < 0.85
        everything += [*train, *test]
    assert len(everything) == len(set(everything))  # no sentence in two categories


def test_pets_split_and_labels(pets_full: tuple[list[dict], list[dict]]) -> None:
    train, test = pets_full
    pools = sentence_pools()
    test_sentences = set().union(*(_all(pools["test"][c]) for c in CATEGORIES))
    train_sentences = set().union(*(_all(pools["train"][c]) for c in CATEGORIES))
    assert len({r["user_id"] for r in train}) == 120 and len({r["user_id"] for r in test}) == 40
    assert not {r["user_id"] for r in train} & {r["user_id"] for r in test}
    for r in train:
        assert r["chosen"] in train_sentences and r["rejected"] in train_sentences
    for r in test:
        assert r["chosen"] in test_sentences and r["rejected"] in test_sentences
    for r in train + test:
        assert r["user_type"] in USER_TYPES
        assert r["chosen_category"] != r["rejected_category"]
        assert rank_key(r["chosen_category"], r["user_type"]) > rank_key(
            r["rejected_category"], r["user_type"])
        pair = {r["chosen_category"], r["rejected_category"]}
        assert r["controversial"] == (pair == set(CONTROVERSIAL_PAIR))
        assert r["pet"] in r["prompt"]
        assert set(r) >= {"user_id", "prompt", "chosen", "rejected", "chosen_category"}


def test_pets_types_disagree_only_on_controversial() -> None:
    for i, a in enumerate(CATEGORIES):
        for b in CATEGORIES[i + 1:]:
            votes = {rank_key(a, t) > rank_key(b, t) for t in USER_TYPES}
            assert (len(votes) == 2) == ({a, b} == set(CONTROVERSIAL_PAIR))


def test_pets_controversial_share(pets_full: tuple[list[dict], list[dict]]) -> None:
    train, _ = pets_full
    share = sum(r["controversial"] for r in train) / len(train)
    assert abs(share - 0.5) < 0.05
    only, only_test = generate_pets("controversial", seed=1, **SMALL)
    assert all(r["controversial"] for r in only + only_test)
    expected = {"helpful_first": "helpful_harmful", "harmless_first": "unhelpful_harmless"}
    assert all(r["chosen_category"] == expected[r["user_type"]] for r in only)


def test_pets_determinism_and_bad_variant() -> None:
    assert generate_pets(seed=3, **SMALL) == generate_pets(seed=3, **SMALL)
    assert generate_pets(seed=3, **SMALL)[0] != generate_pets(seed=4, **SMALL)[0]
    with pytest.raises(ValueError, match="bogus"):
        generate_pets("bogus")
