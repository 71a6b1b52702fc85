"""The personas generator: users weighting response attributes."""

from __future__ import annotations

import pytest

from vpl.data.personas import ATTRIBUTES, generate_personas, render_response, user_utility
from vpl.data.personas import questions as persona_questions

SMALL = {"users_per_type": 10, "test_users_per_type": 5, "pairs_per_user": 20}


@pytest.mark.parametrize("users", ["2", "4", "continuous"])
def test_personas_labels_follow_weights(users: str) -> None:
    train, test = generate_personas(users, seed=0)
    n_types = {"2": 2, "4": 4, "continuous": 4}[users]
    assert len({r["user_id"] for r in train}) == 60 * n_types
    assert len({r["user_id"] for r in test}) == 20 * n_types
    assert not {r["user_id"] for r in train} & {r["user_id"] for r in test}
    for r in train + test:
        assert len(r["user_weights"]) == len(ATTRIBUTES)
        assert r["chosen"] != r["rejected"]
        if not r["tie"]:
            assert user_utility(r["user_weights"], r["chosen_attributes"]) > user_utility(
                r["user_weights"], r["rejected_attributes"])
    ties = sum(r["tie"] for r in train) / len(train)
    assert ties < 0.05
    if users != "continuous":
        types = {r["user_type"] for r in train}
        assert len(types) == n_types and types <= set(ATTRIBUTES)
        for r in train:
            assert r["user_weights"][ATTRIBUTES.index(r["user_type"])] == 1.0


def test_personas_continuous_users_distinct() -> None:
    train, test = generate_personas("continuous", seed=0)
    weights = {r["user_id"]: tuple(r["user_weights"]) for r in train + test}
    assert len(set(weights.values())) == len(weights)
    for r in train:
        w = r["user_weights"]
        assert abs(sum(w) - 1.0) < 1e-9
        assert r["user_type"] == ATTRIBUTES[w.index(max(w))]


def test_personas_test_texts_unseen() -> None:
    train, test = generate_personas("4", seed=0)
    train_texts = {t for r in train for t in (r["prompt"], r["chosen"], r["rejected"])}
    test_texts = {t for r in test for t in (r["prompt"], r["chosen"], r["rejected"])}
    assert not train_texts & test_texts


def test_personas_text_reflects_levels() -> None:
    q = persona_questions("train")[0]
    base = dict.fromkeys(ATTRIBUTES, 0) | {"formality": 2}
    lengths = [len(render_response(q, base | {"detail": d})) for d in range(4)]
    assert lengths == sorted(lengths) and len(set(lengths)) == 4
    for k in range(4):
        text = render_response(q, base | {"examples": k})
        assert text.count("example") == k
    casual = render_response(q, base | {"formality": 0})
    assert casual == casual.lower()
    assert render_response(q, base | {"caution": 2}) != render_response(q, base)


def test_personas_determinism_and_bad_users() -> None:
    assert generate_personas("2", seed=5, **SMALL) == generate_personas("2", seed=5, **SMALL)
    assert generate_personas("2", seed=5, **SMALL) != generate_personas("2", seed=6, **SMALL)
    with pytest.raises(ValueError, match="bogus"):
        generate_personas("bogus")
    assert user_utility({"detail": 2.0}, dict(zip(ATTRIBUTES, (1, 3, 3, 3), strict=True))) == 2.0


def test_personas_question_splits() -> None:
    train, test = persona_questions("train"), persona_questions("test")
    topics = {q.topic for q in train + test}
    for topic in topics:
        assert sum(q.topic == topic for q in train) >= 4
        assert sum(q.topic == topic for q in test) == 1
    assert len({q.prompt for q in train + test}) == len(train) + len(test)
    train_facts = {f for q in train for f in q.facts + q.examples}
    test_facts = {f for q in test for f in q.facts + q.examples}
    assert not train_facts & test_facts
