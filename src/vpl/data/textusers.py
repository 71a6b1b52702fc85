"""Simulated users who judge any text: each user's true utility of a response is a weighted sum
of attributes that code measures on the text itself (length, examples, hedging, enthusiasm,
lists, formality), so generated responses can be labeled and a policy's output scored by the
users it serves (`benchmarks/generation_bench.py`).

Four types weigh the attributes differently; users of a type share its weights up to a small
individual jitter. Attributes are standardized over the candidate set they are computed on, so
weights are comparable across attributes (and clipped, so no single outlier dominates).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

ATTRIBUTES = ("length", "examples", "hedging", "enthusiasm", "lists", "formality")

TYPES: dict[str, tuple[float, ...]] = {
    # length, examples, hedging, enthusiasm, lists, formality
    "thorough": (1.0, 1.0, 0.0, -0.3, 0.5, 0.3),
    "terse": (-1.0, -0.3, -0.5, 0.0, -0.3, 0.0),
    "cautious": (0.2, 0.0, 1.0, -0.8, 0.0, 0.8),
    "cheerful": (-0.2, 0.3, -0.6, 1.0, 0.2, -0.8),
}
"""Attribute weights of each user type (in the order of `ATTRIBUTES`)."""

_EXAMPLES = re.compile(r"\b(for example|for instance|e\.g\.|such as|like when)\b", re.I)
_HEDGES = re.compile(r"\b(might|may|perhaps|possibly|could|generally|usually|often|"
                     r"it depends|consider)\b", re.I)
_CONTRACTIONS = re.compile(r"\b\w+'(s|re|ll|ve|d|t|m)\b", re.I)
_INFORMAL = re.compile(r"\b(hey|yeah|cool|awesome|gonna|wanna|super|totally|lol)\b", re.I)
_LIST_LINE = re.compile(r"^\s*([-*\u2022]|\d+[.)])\s+", re.M)


def attributes(text: str) -> np.ndarray:
    """The raw attributes (len(ATTRIBUTES),) of one text."""
    words = max(len(text.split()), 1)
    return np.array([
        np.log1p(words),
        len(_EXAMPLES.findall(text)),
        len(_HEDGES.findall(text)) / words * 100,
        text.count("!"),
        len(_LIST_LINE.findall(text)),
        -(len(_CONTRACTIONS.findall(text)) + 2 * len(_INFORMAL.findall(text))) / words * 100,
    ], dtype=np.float64)


CLIP = 3.0
"""Standardized attributes are clipped to +-CLIP: a response with twenty exclamation marks is
not twenty times as cheerful, and one outlier must not decide a user's mean utility."""


def standardized(texts: Sequence[str]) -> np.ndarray:
    """(N, A) attributes of texts, each column centered and scaled by its spread over them,
    clipped to +-`CLIP`."""
    a = np.stack([attributes(t) for t in texts])
    return np.clip((a - a.mean(0)) / np.maximum(a.std(0), 1e-9), -CLIP, CLIP)


def make_users(n_per_type: int, seed: int, jitter: float = 0.2
               ) -> tuple[np.ndarray, list[str]]:
    """(U, A) weights and the type of each of `n_per_type` users per type."""
    rng = np.random.default_rng(seed)
    w, kinds = [], []
    for name, base in TYPES.items():
        for _ in range(n_per_type):
            w.append(np.asarray(base) + jitter * rng.normal(size=len(base)))
            kinds.append(name)
    return np.stack(w), kinds


def choose(utility_a: float, utility_b: float, rng: np.random.Generator,
           beta: float = 3.0) -> bool:
    """Whether a user prefers a over b: Bradley-Terry with rationality `beta`."""
    return bool(rng.random() < 1.0 / (1.0 + np.exp(-beta * (utility_a - utility_b))))
