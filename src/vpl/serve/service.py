"""The service's operations over the store and the scorer; no HTTP here."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpl.data.io import row_iterator
from vpl.data.schema import DataError
from vpl.serve.scorer import Belief, RunScorer
from vpl.serve.store import Store, StoredAnswers


@dataclass(frozen=True)
class PoolItem:
    """One candidate comparison of the annotation pool."""

    prompt: str
    a: str
    b: str


def read_objects(path: str | os.PathLike, required: Sequence[str]) -> list[tuple[int, dict]]:
    """(line, object) of each row of a JSONL (or JSON, CSV, Parquet) file; a `DataError` naming
    the file and line for bad JSON, a row that is not an object or a missing field."""
    out = []
    for line, row in row_iterator(Path(path)):
        if isinstance(row, DataError):
            raise row
        if not isinstance(row, dict):
            raise DataError("expected an object", source=str(path), line=line)
        for name in required:
            if name not in row:
                raise DataError("missing field", source=str(path), line=line, field_name=name)
        out.append((line, row))
    return out


def text_of(row: dict, name: str, *, source: str, line: int, empty: bool = True) -> str:
    """The string field `name` of a row (absent: ""), else a `DataError` naming it."""
    value = row.get(name, "")
    if not isinstance(value, str) or (not empty and not value):
        raise DataError("expected a string" if empty else "expected a non-empty string",
                        source=source, line=line, field_name=name)
    return value


def load_pool(path: str | os.PathLike) -> list[PoolItem]:
    """Candidate comparisons from a JSONL file of {"prompt", "a", "b"} objects (prompt
    optional); bad lines are reported by file, line and field."""
    src = str(path)
    out = [PoolItem(text_of(row, "prompt", source=src, line=n),
                    text_of(row, "a", source=src, line=n, empty=False),
                    text_of(row, "b", source=src, line=n, empty=False))
           for n, row in read_objects(path, ("a", "b"))]
    if not out:
        raise DataError("no candidate comparisons", source=src)
    return out


POOL_REQUEST = "pool:"
"""Prefix of the request ids of annotation-page answers (clients may not use it)."""


def pool_request_id(item: PoolItem) -> str:
    """The request id of an answer to a pool pair: from its texts, not its position, so an
    edited or reordered pool never takes one pair's answer for another's."""
    import hashlib

    digest = hashlib.sha256("\x00".join((item.prompt, item.a, item.b)).encode()).hexdigest()
    return POOL_REQUEST + digest[:40]


class Service:
    """Users, answers, latents, scores and queries of one database and one trained run."""

    def __init__(self, store: Store, scorer: RunScorer,
                 pool: Sequence[PoolItem] | None = None) -> None:
        self.store, self.scorer = store, scorer
        self.pool = list(pool or [])
        self._prior: Belief | None = None

    def belief(self, key_id: int, user_id: str) -> Belief:
        """The user's posterior from their stored answers (raises for an unknown or another
        key's user)."""
        cached = self.scorer.cached(user_id, self.store.version(key_id, user_id))
        if cached is not None:  # the texts are read only when the answers changed
            return cached
        return self._belief_of(user_id, self.store.answers(key_id, user_id))

    def _belief_of(self, user_id: str, ans: StoredAnswers) -> Belief:
        return self.scorer.belief(user_id, ans.version, ans.prompts, ans.chosen, ans.rejected)

    def latent(self, key_id: int, user_id: str) -> tuple[np.ndarray, np.ndarray, int]:
        """Posterior mean, standard deviation and number of answers."""
        b = self.belief(key_id, user_id)
        mean, std = b.moments()
        return mean, std, b.n_answers

    def score(self, key_id: int, user_id: str, prompt: str, responses: Sequence[str]
              ) -> tuple[np.ndarray, np.ndarray]:
        """Reward mean and std of each response for the user."""
        return self.scorer.score(self.belief(key_id, user_id), prompt, responses)

    def next_query(self, key_id: int, user_id: str, candidates: Sequence[tuple[str, str, str]]
                   ) -> tuple[int, float]:
        """The most informative candidate for the user and its info gain (nats)."""
        return self.scorer.next_query(self.belief(key_id, user_id), candidates)

    def forget(self, key_id: int, user_id: str) -> None:
        """Delete the user and their cached posterior."""
        self.store.delete_user(key_id, user_id)
        self.scorer.forget(user_id)

    # the annotation page
    def certainty(self, belief: Belief) -> float:
        """How far the posterior has narrowed from the prior, in [0, 1]."""
        if self._prior is None:
            self._prior = self.scorer.belief("\x00prior", 0, [], [], [])
        _, prior_std = self._prior.moments()
        _, std = belief.moments()
        ok = prior_std > 1e-8
        if not ok.any():
            return 0.0
        return float(np.clip(1.0 - (std[ok] / prior_std[ok]).mean(), 0.0, 1.0))

    def _unanswered(self, ans: StoredAnswers) -> list[int]:
        done = {(p, *sorted((c, r))) for p, c, r in zip(ans.prompts, ans.chosen, ans.rejected,
                                                        strict=True)}
        return [i for i, q in enumerate(self.pool) if (q.prompt, *sorted((q.a, q.b))) not in done]

    def pool_next(self, key_id: int, user_id: str) -> dict:
        """The next pool pair for the user by info gain, with their progress."""
        ans = self.store.answers(key_id, user_id)  # read once for both
        left = self._unanswered(ans)
        belief = self._belief_of(user_id, ans)
        base = {"n_answers": belief.n_answers, "remaining": len(left),
                "certainty": self.certainty(belief)}
        if not left:
            return {"index": None, **base}
        j, _ = self.scorer.next_query(belief, [(self.pool[i].prompt, self.pool[i].a,
                                                self.pool[i].b) for i in left])
        q = self.pool[left[j]]
        return {"index": left[j], "prompt": q.prompt, "a": q.a, "b": q.b, **base}

    def pool_answer(self, key_id: int, user_id: str, index: int, choice: str) -> tuple[int, int]:
        """Store the user's choice on pool pair `index` ("a" or "b"); once per pair."""
        if index >= len(self.pool):
            raise IndexError(f"no pool pair {index} (the pool has {len(self.pool)})")
        q = self.pool[index]
        chosen, rejected = (q.a, q.b) if choice == "a" else (q.b, q.a)
        return self.store.add_answers(key_id, user_id, [(q.prompt, chosen, rejected)],
                                      request_id=pool_request_id(q))
