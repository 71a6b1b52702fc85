"""Crowd agreement on real data: how often a rater agrees with the other raters of a pair.

Where many raters judge the same two items (crowd comparisons, ratings turned into pairs), the
majority of the *other* raters of that pair is the crowd's answer to it. How often a rater
agrees with it shows how much of the data is shared taste and how much is disagreement
(personal taste or noise). With many votes per pair it bounds what a model that ignores the
rater can score on those pairs; with few (ratings turned into pairs), a model that pools the
crowd over items can beat it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vpl.data.pairs import PairData


def _votes(data: PairData) -> tuple[np.ndarray, np.ndarray]:
    """(unordered item pair (P, 2) of keys, vote (P,): +1 where the smaller key was chosen)."""
    a, b = data.item_keys[data.chosen], data.item_keys[data.rejected]
    pair = np.stack([np.minimum(a, b), np.maximum(a, b)], 1)
    return pair, np.where(a < b, 1, -1)


def crowd_agreement(test: PairData, others: Sequence[PairData] = ()) -> dict[str, Any]:
    """Agreement of each pair of `test` with the majority of every other vote on the same two
    items, in `test` (other users) and in `others` (e.g. the training users): the share of
    test pairs with such votes (`coverage`), how many (`n_pairs`) and the agreement there
    (ties count one half; NaN without any)."""
    pt, vt = _votes(test)
    pairs, votes = [pt], [vt]
    for d in others:
        p, v = _votes(d)
        pairs.append(p)
        votes.append(v)
    allp = np.concatenate(pairs)
    uniq, inv = np.unique(allp, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    total = np.bincount(inv, np.concatenate(votes).astype(float), len(uniq))
    count = np.bincount(inv, minlength=len(uniq))
    own = inv[: len(pt)]
    rest, n_rest = total[own] - vt, count[own] - 1
    judged = n_rest > 0
    agree = np.where(rest == 0, 0.5, (np.sign(rest) == vt).astype(float))[judged]
    return {"agreement": float(agree.mean()) if len(agree) else float("nan"),
            "n_pairs": int(judged.sum()), "coverage": float(judged.mean()) if len(pt) else 0.0}
