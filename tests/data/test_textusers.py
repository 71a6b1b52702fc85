"""Simulated users who judge text: attributes measured on the text, types that disagree."""

from __future__ import annotations

import numpy as np

from vpl.data.textusers import ATTRIBUTES, TYPES, attributes, choose, make_users, standardized


def test_attributes_measure_what_they_name():
    a = dict(zip(ATTRIBUTES, attributes("- First, for example, you might rest!\n- Then eat."),
                 strict=True))
    b = dict(zip(ATTRIBUTES, attributes("Yeah, it's totally cool"), strict=True))
    assert a["examples"] == 1 and a["lists"] == 2 and a["enthusiasm"] == 1 and a["hedging"] > 0
    assert b["formality"] < a["formality"] and b["length"] < a["length"]


def test_types_rank_the_same_texts_differently():
    texts = ["Sure!", "It might depend; for example, consider resting.",
             "- Rest\n- Eat well\n- Walk daily, for example after lunch, usually 30 minutes",
             "Yeah, that's awesome!!! Totally do it!"]
    z = standardized(texts)
    assert np.abs(z).max() <= 3.0 and np.abs(z.mean(0)).max() < 0.5
    best = {k: int(np.argmax(z @ np.asarray(w))) for k, w in TYPES.items()}
    assert len(set(best.values())) >= 3  # the types want different responses
    w, kinds = make_users(5, seed=0)
    assert w.shape == (20, len(ATTRIBUTES)) and kinds.count("terse") == 5
    rng = np.random.default_rng(0)
    assert np.mean([choose(1.0, 0.0, rng) for _ in range(500)]) > 0.9
