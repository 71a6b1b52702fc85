"""Context sampling: which of a user's comparisons form the context of a target or a user.

Every sampler returns pair indices (rows, K), -1 padded, for `vpl.data.pairs.build_batch`.
All of them reduce to one vectorized primitive, `sample_blocks`: for each row, k distinct
positions drawn uniformly from a user's block of pairs, optionally skipping a run of
positions (the target itself, or a group's targets). No Python loop runs per pair or user.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vpl.data.pairs import ContextBatch, PairData, build_batch

_KEYS_BUDGET = 1 << 22
"""Random keys drawn at once when small blocks are sampled by sorting keys."""


def _user_blocks(data: PairData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs grouped by user: (order (P,) pair indices sorted by user, start (U,), count (U,))
    with user u's pairs at order[start[u] : start[u] + count[u]], in data order."""
    order = np.argsort(data.user, kind="stable")
    count = np.bincount(data.user, minlength=len(data.users)).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    return order, start, count


def _distinct_by_keys(n: np.ndarray, k: np.ndarray, rng: np.random.Generator, width: int
                      ) -> np.ndarray:
    """Rows of k[i] distinct positions of range(n[i]) in random order (k <= n), by sorting
    uniform keys; (B, width) -1 padded."""
    out = np.full((len(n), width), -1, dtype=np.int64)
    if not len(n):
        return out
    cols = int(n.max())
    step = max(1, _KEYS_BUDGET // max(cols, 1))
    for s in range(0, len(n), step):  # chunks of rows bound the memory of the keys
        nn, kk = n[s : s + step], k[s : s + step]
        keys = rng.random((len(nn), cols))
        keys[np.arange(cols)[None, :] >= nn[:, None]] = np.inf
        first = np.argsort(keys, axis=1)[:, :width]  # (b, width)
        keep = np.arange(first.shape[1])[None, :] < kk[:, None]
        out[s : s + step, : first.shape[1]] = np.where(keep, first, -1)
    return out


def _distinct_by_redraws(n: np.ndarray, k: np.ndarray, rng: np.random.Generator, width: int
                         ) -> np.ndarray:
    """The same for k much smaller than n: draw with replacement, redraw repeats until none."""
    cols = np.arange(width)[None, :]
    live = cols < k[:, None]  # (B, width)
    pos = np.where(live, (rng.random((len(n), width)) * n[:, None]).astype(np.int64), -1)
    while True:
        srt = np.sort(np.where(live, pos, -1 - cols), axis=1)  # padding sorts apart, distinct
        dup_rows = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(1))
        if not len(dup_rows):
            return pos
        sub = pos[dup_rows]
        # a repeat is any entry equal to an earlier entry of its row
        rep = (sub[:, :, None] == sub[:, None, :]) & np.tril(np.ones((width, width), bool), -1)
        redo = rep.any(2) & live[dup_rows]
        fresh = (rng.random(sub.shape) * n[dup_rows][:, None]).astype(np.int64)
        pos[dup_rows] = np.where(redo, fresh, sub)


def sample_blocks(n: np.ndarray, k: np.ndarray, rng: np.random.Generator, *, width: int,
                  skip_start: np.ndarray | None = None, skip_len: np.ndarray | None = None
                  ) -> np.ndarray:
    """For each row i, min(k[i], n[i] - skip_len[i]) distinct positions of range(n[i]) that are
    not in [skip_start[i], skip_start[i] + skip_len[i]), uniformly at random, in random order.
    Returns (B, width) int64, -1 padded."""
    n = np.asarray(n, dtype=np.int64)
    skip_len = np.zeros_like(n) if skip_len is None else np.asarray(skip_len, dtype=np.int64)
    skip_start = np.zeros_like(n) if skip_start is None else np.asarray(skip_start, np.int64)
    avail = np.maximum(n - skip_len, 0)
    take = np.minimum(np.asarray(k, dtype=np.int64), avail).clip(0, width)
    pos = np.full((len(n), width), -1, dtype=np.int64)
    small = avail <= 4 * np.maximum(take, 1)  # few candidates: sort keys; many: redraw repeats
    for rows, draw in ((np.flatnonzero(small), _distinct_by_keys),
                       (np.flatnonzero(~small), _distinct_by_redraws)):
        if len(rows):
            pos[rows] = draw(avail[rows], take[rows], rng, width)
    # positions at or past the skipped run move beyond it
    shifted = pos + np.where(pos >= skip_start[:, None], skip_len[:, None], 0)
    return np.where(pos >= 0, shifted, -1)


def sample_contexts(targets: PairData, target_idx: np.ndarray, pool: PairData, k: int | np.ndarray,
                    rng: np.random.Generator, *, same_object: bool | None = None) -> np.ndarray:
    """For each target pair, indices of up to k other pairs of the same user in `pool`.

    Users are matched by name, so `pool` may be a different split of the same users. A target
    pair is never part of its own context when `pool` is `targets`. Returns (B, max k), -1 padded.
    """
    same = (pool is targets) if same_object is None else same_object
    target_idx = np.asarray(target_idx, dtype=np.int64)
    ks = np.broadcast_to(np.asarray(k, dtype=np.int64), (len(target_idx),))
    width = int(ks.max(initial=0))
    order, start, count = _user_blocks(pool)
    name_to_pool = {name: i for i, name in enumerate(pool.users)}
    to_pool = np.array([name_to_pool.get(u, -1) for u in targets.users], dtype=np.int64)
    pu = to_pool[targets.user[target_idx]]  # (B,) pool user of each target, -1 if none
    known = pu >= 0
    n = np.where(known, count[np.maximum(pu, 0)], 0)
    base = np.where(known, start[np.maximum(pu, 0)], 0)
    skip_start = skip_len = None
    if same:  # the target's own position in its user's block is skipped
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        skip_start = rank[target_idx] - base
        skip_len = np.ones_like(n)
    pos = sample_blocks(n, ks, rng, width=width, skip_start=skip_start, skip_len=skip_len)
    return np.where(pos >= 0, order[np.maximum(base[:, None] + pos, 0)], -1)


def batches_per_epoch(data: PairData, *, users_per_batch: int, targets_per_user: int,
                      world: int = 1) -> int:
    """How many batches `training_batches` yields in one epoch over `data` (to each of `world`
    processes)."""
    count = np.bincount(data.user, minlength=len(data.users))
    groups = int((-(-count // targets_per_user)).sum())
    return -(-groups // (users_per_batch * world))


def training_batches(data: PairData, *, users_per_batch: int, targets_per_user: int,
                     context_size: int, rng: np.random.Generator,
                     variable_context: bool = True, shard: tuple[int, int] = (0, 1)
                     ) -> Iterator[ContextBatch]:
    """One epoch of training batches: every pair is a target once, grouped by user.

    Each group's context is drawn from the user's *other* pairs (never its targets). With
    `variable_context`, half the groups get a context size drawn uniformly from 0..K, so the
    model learns to work with any number of comparisons.

    `shard` (rank, world): each step's `world` batches are dealt out to `world` processes,
    which pass the same `rng` state and get `batches_per_epoch(world=world)` batches each
    (the last step padded with the epoch's first groups, as torch's DistributedSampler pads).
    """
    t = targets_per_user
    _, start, count = _user_blocks(data)
    # every user's pairs in a random order: sort by (user, random key)
    order = np.lexsort((rng.random(len(data)), data.user))
    users = np.flatnonzero(count)
    per_user = -(-count[users] // t)  # groups of each user
    g_user = np.repeat(users, per_user)  # (G,)
    g_first = np.arange(len(g_user)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    g_start = g_first * t  # offset of the group's targets in its user's block
    g_len = np.minimum(t, count[g_user] - g_start)
    k = np.full(len(g_user), context_size, dtype=np.int64)
    if variable_context:
        coin = rng.random(len(g_user)) < 0.5
        k = np.where(coin, rng.integers(0, context_size + 1, len(g_user)), k)
    ctx_pos = sample_blocks(count[g_user], k, rng, width=context_size, skip_start=g_start,
                            skip_len=g_len)  # (G, K)
    base = start[g_user][:, None]
    ctx = np.where(ctx_pos >= 0, order[np.maximum(base + ctx_pos, 0)], -1)
    cols = np.arange(t)[None, :]
    tgt = np.where(cols < g_len[:, None],
                   order[np.minimum(base + g_start[:, None] + cols, len(order) - 1)], -1)
    perm = rng.permutation(len(g_user))
    rank, world = shard
    step = users_per_batch * world
    if world > 1 and len(perm) % step:
        perm = np.resize(perm, -(-len(perm) // step) * step)  # wraps around
    for s in range(0, len(perm), step):
        rows = perm[s : s + step][rank::world]
        yield build_batch(data, tgt[rows], data, ctx[rows])


def sample_user_contexts(data: PairData, users: np.ndarray, k: int, rng: np.random.Generator,
                         *, width: int | None = None) -> np.ndarray:
    """For each entry of `users` (user indices, repeats allowed), up to k of that user's pairs
    of `data` drawn at random without replacement. Returns (len(users), width or k), -1 padded."""
    users = np.asarray(users, dtype=np.int64)
    order, start, count = _user_blocks(data)
    width = k if width is None else width
    pos = sample_blocks(count[users], np.full(len(users), k), rng, width=width)
    return np.where(pos >= 0, order[np.maximum(start[users][:, None] + pos, 0)], -1)


def first_contexts(data: PairData, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first k pairs of every user of `data` (in data order) as contexts: (user indices (U,),
    pair indices (U, k), -1 padded)."""
    order, start, count = _user_blocks(data)
    users = np.flatnonzero(count)
    cols = np.arange(k)[None, :]
    ok = cols < count[users][:, None]
    return users, np.where(ok, order[np.minimum(start[users][:, None] + cols, len(order) - 1)],
                           -1)
