"""Context sampling: which of a user's comparisons form the context of a target or a user.

Every sampler returns pair indices (rows, K), -1 padded, for `vpl.data.pairs.build_batch`.
"""

from __future__ import annotations

import numpy as np

from vpl.data.pairs import PairData, build_batch


def _pad(rows: list[np.ndarray], width: int | None = None) -> np.ndarray:
    width = max((len(r) for r in rows), default=0) if width is None else width
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r[:width]
    return out


def sample_contexts(targets: PairData, target_idx: np.ndarray, pool: PairData, k: int | np.ndarray,
                    rng: np.random.Generator, *, same_object: bool | None = None) -> np.ndarray:
    """For each target pair, indices of up to k other pairs of the same user in `pool`.

    Users are matched by name, so `pool` may be a different split of the same users. A target
    pair is never part of its own context when `pool` is `targets`. Returns (B, max k), -1 padded.
    """
    same = (pool is targets) if same_object is None else same_object
    name_to_pool = {name: i for i, name in enumerate(pool.users)}
    pool_by_user = pool.by_user()
    ks = np.broadcast_to(np.asarray(k, dtype=np.int64), (len(target_idx),))
    rows = []
    for p, kk in zip(np.asarray(target_idx).tolist(), ks.tolist(), strict=True):
        pu = name_to_pool.get(targets.users[targets.user[p]])
        cand = pool_by_user.get(pu, np.empty(0, dtype=np.int64)) if pu is not None else \
            np.empty(0, dtype=np.int64)
        if same:
            cand = cand[cand != p]
        take = min(int(kk), len(cand))
        rows.append(rng.choice(cand, size=take, replace=False) if take else cand[:0])
    return _pad(rows, int(ks.max(initial=0)))


def training_batches(data: PairData, *, users_per_batch: int, targets_per_user: int,
                     context_size: int, rng: np.random.Generator,
                     variable_context: bool = True):
    """One epoch of training batches: every pair is a target once, grouped by user.

    Each group's context is drawn from the user's *other* pairs (never its targets). With
    `variable_context`, half the groups get a context size drawn uniformly from 0..K, so the
    model learns to work with any number of comparisons.
    """
    groups: list[tuple[int, np.ndarray]] = []
    for u, idx in data.by_user().items():
        idx = rng.permutation(idx)
        for s in range(0, len(idx), targets_per_user):
            groups.append((u, idx[s : s + targets_per_user]))
    order = rng.permutation(len(groups))
    by_user = data.by_user()
    for s in range(0, len(order), users_per_batch):
        chunk = [groups[i] for i in order[s : s + users_per_batch]]
        t_idx = _pad([g[1] for g in chunk], targets_per_user)
        ctx_rows = []
        for u, tg in chunk:
            k = context_size
            if variable_context and rng.random() < 0.5:
                k = int(rng.integers(0, context_size + 1))
            cand = np.setdiff1d(by_user[u], tg, assume_unique=True)
            take = min(k, len(cand))
            ctx_rows.append(rng.choice(cand, size=take, replace=False) if take else cand[:0])
        c_idx = _pad(ctx_rows, context_size)
        yield build_batch(data, t_idx, data, c_idx)


def sample_user_contexts(data: PairData, users: np.ndarray, k: int, rng: np.random.Generator,
                         *, width: int | None = None) -> np.ndarray:
    """For each entry of `users` (user indices, repeats allowed), up to k of that user's pairs
    of `data` drawn at random without replacement. Returns (len(users), width or k), -1 padded."""
    by_user = data.by_user()
    rows = [rng.permutation(by_user[int(u)])[:k] for u in users]
    return _pad(rows, k if width is None else width)


def first_contexts(data: PairData, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first k pairs of every user of `data` (in data order) as contexts: (user indices (U,),
    pair indices (U, k), -1 padded)."""
    by_user = data.by_user()
    users = np.array(sorted(by_user), dtype=np.int64)
    return users, _pad([by_user[int(u)][:k] for u in users], k)
