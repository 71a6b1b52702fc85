"""Evaluation: per-pair scores with user contexts, accuracy summaries, latent diagnostics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vpl.data.contexts import sample_contexts, sample_user_contexts
from vpl.data.pairs import ContextBatch, PairData, build_batch
from vpl.models import RewardModel
from vpl.models.latent import LatentRewardModel


@dataclass
class PairScores:
    """Log-odds for each target pair, with its user and whether it shares items with its context."""

    logits: np.ndarray  # (P,)
    user: np.ndarray  # (P,) user index into `users`
    item_disjoint: np.ndarray  # (P,) bool: no response of the pair appears in its context
    users: list[str]

    @property
    def correct(self) -> np.ndarray:
        """1 where chosen scored higher, 0.5 on ties, 0 otherwise."""
        return (self.logits > 0) + 0.5 * (self.logits == 0)

    @property
    def accuracy(self) -> float:
        """Share of pairs ranked as labeled."""
        return float(self.correct.mean()) if len(self.logits) else float("nan")

    @property
    def accuracy_item_disjoint(self) -> float:
        """Accuracy over pairs that share no response with their context."""
        m = self.item_disjoint
        return float(self.correct[m].mean()) if m.any() else float("nan")

    def per_user(self) -> dict[str, float]:
        """Accuracy of each user (one pass over the pairs, whatever the number of users)."""
        users, owner = np.unique(self.user, return_inverse=True)
        acc = np.bincount(owner, weights=self.correct) / np.bincount(owner)
        return dict(zip([self.users[u] for u in users.tolist()], acc.tolist(), strict=True))

    def nll(self) -> float:
        """Mean negative log-likelihood of the labels."""
        return float(np.mean(np.logaddexp(0.0, -self.logits)))

    def ece(self, bins: int = 10) -> float:
        """Expected calibration error of P(label) over symmetric pairs (both orders)."""
        z = np.concatenate([self.logits, -self.logits])
        p = np.exp(-np.logaddexp(0.0, -z))  # sigmoid(z) without overflow for large |z|
        y = np.concatenate([np.ones_like(self.logits), np.zeros_like(self.logits)])
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
        err = 0.0
        for b in range(bins):
            m = which == b
            if m.any():
                err += m.mean() * abs(p[m].mean() - y[m].mean())
        return float(err)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: overall, item-disjoint, worst-user accuracy, calibration."""
        per_user = self.per_user()
        accs = np.array(list(per_user.values()))
        return {
            "accuracy": self.accuracy,
            "accuracy_item_disjoint": self.accuracy_item_disjoint,
            "n_pairs": int(len(self.logits)),
            "n_pairs_item_disjoint": int(self.item_disjoint.sum()),
            "n_users": len(per_user),
            "worst_user_accuracy": float(accs.min()) if len(accs) else float("nan"),
            "user_accuracy_std": float(accs.std()) if len(accs) else float("nan"),
            "nll": self.nll(),
            "ece": self.ece(),
            "per_user": per_user,
        }


def _user_spread(means: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each user's average of `means` (U, Z) and the average over users of their variance
    across rows (Z,), in one pass over the rows grouped by `owner`."""
    order = np.argsort(owner, kind="stable")
    _, starts, count = np.unique(owner[order], return_index=True, return_counts=True)
    rows = means[order].astype(np.float64)
    centers = np.add.reduceat(rows, starts, axis=0) / count[:, None]
    dev = rows - np.repeat(centers, count, axis=0)
    within = (np.add.reduceat(dev * dev, starts, axis=0) / count[:, None]).mean(0)
    return centers, within


EVAL_CHUNK = 1 << 20
"""`evaluate_pairs` draws contexts for and scores at most this many target pairs at a time, so
its memory does not grow with the number of pairs (up to this many, the draws are those of one
`pair_contexts` call)."""


def pair_contexts(targets: PairData, pool: PairData, context_size: int,
                  seed: int | np.random.Generator, *, rows: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A context of K other pairs of its user from `pool` for every pair of `targets` (or for
    its pairs `rows`), (P, K) row indices into `pool` (-1 pads), and whether each target pair
    shares no item with it. `seed`: a seed, or a generator to draw from (and advance)."""
    rows = np.arange(len(targets)) if rows is None else np.asarray(rows, dtype=np.int64)
    rng = np.random.default_rng(seed)  # a generator is returned as it is
    ctx = sample_contexts(targets, rows, pool, context_size, rng) if context_size > 0 else \
        np.full((len(rows), 0), -1, dtype=np.int64)
    # item-disjointness: compare response keys of the target with those in its context
    t_keys = np.stack([targets.item_keys[targets.chosen[rows]],
                       targets.item_keys[targets.rejected[rows]]], 1)
    safe = np.maximum(ctx, 0)
    c_keys = np.concatenate([pool.item_keys[pool.chosen[safe]],
                             pool.item_keys[pool.rejected[safe]]], axis=1)  # (P, 2K)
    c_keys = np.where(np.concatenate([ctx, ctx], 1) >= 0, c_keys, -1)
    overlap = (t_keys[:, :, None] == c_keys[:, None, :]).any(axis=(1, 2))
    return ctx, ~overlap


def context_batches(targets: PairData, pool: PairData, ctx: np.ndarray, *,
                    rows: np.ndarray | None = None, batch_size: int = 1024,
                    device: str = "cpu", distinct: bool = False
                    ) -> Iterator[tuple[np.ndarray, ContextBatch]]:
    """Batches of one target pair per row with its context `ctx` (`pair_contexts`, for every
    pair of `targets` or for its pairs `rows`), and the rows of `targets` each holds. A user's
    targets go together, so their contexts, drawn from the same pairs, overlap; with `distinct`
    each batch carries its distinct context pairs (`build_batch(distinct=True)`; for models
    that read them, `RewardModel.reads_distinct_contexts`)."""
    rows = np.arange(len(targets)) if rows is None else np.asarray(rows, dtype=np.int64)
    order = np.argsort(targets.user[rows], kind="stable")
    for s in range(0, len(rows), batch_size):
        pos = order[s : s + batch_size]
        yield rows[pos], build_batch(targets, rows[pos, None], pool, ctx[pos],
                                     distinct=distinct).to(device)


@torch.no_grad()
def evaluate_pairs(model: RewardModel, targets: PairData, pool: PairData | None = None, *,
                   context_size: int = 8, seed: int = 0, batch_size: int = 1024,
                   device: str = "cpu") -> PairScores:
    """Score every pair of `targets`, each with a context of K other pairs of its user.

    Contexts come from `pool` (default: `targets` itself, never including the scored pair).
    """
    pool = targets if pool is None else pool
    model.eval()
    model.bind(targets)
    n = len(targets)
    logits = np.empty(n, dtype=np.float64)
    disjoint = np.ones(n, dtype=bool)
    rng = np.random.default_rng(seed)
    for s in range(0, n, EVAL_CHUNK):  # `EVAL_CHUNK` targets' contexts at a time
        chunk = np.arange(s, min(n, s + EVAL_CHUNK))
        ctx, disjoint[chunk] = pair_contexts(targets, pool, context_size, rng, rows=chunk)
        for rows, batch in context_batches(targets, pool, ctx, rows=chunk, batch_size=batch_size,
                                           device=device,
                                           distinct=model.reads_distinct_contexts):
            logits[rows] = model.predict(batch)[:, 0].double().cpu().numpy()
    return PairScores(logits=logits, user=targets.user.copy(), item_disjoint=disjoint,
                      users=targets.users)


@torch.no_grad()
def posterior_means(model: RewardModel, data: PairData, *, context_size: int = 8,
                    contexts_per_user: int = 4, seed: int = 0, device: str = "cpu"
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior means for several random contexts per user.

    Returns (means (U*C, Z), posterior log-variances (U*C, Z), user index (U*C,)).
    """
    rng = np.random.default_rng(seed)
    owners = np.repeat(np.array(sorted(data.by_user()), dtype=np.int64), contexts_per_user)
    ctx = sample_user_contexts(data, owners, context_size, rng)
    ctx = ctx[:, : max(int((ctx >= 0).sum(1).max(initial=0)), 1)]
    rows = ctx
    targets = np.zeros((len(rows), 1), dtype=np.int64)
    model.eval()
    model.bind(data)
    means, logvars = [], []
    for s in range(0, len(rows), 1024):
        batch = build_batch(data, targets[s : s + 1024], data, ctx[s : s + 1024]).to(device)
        post = model.posterior(batch)
        if post is None:
            raise ValueError(f"model {model.name!r} has no latent posterior")
        means.append(post.mean.cpu().numpy())
        logvars.append(post.logvar.cpu().numpy())
    return np.concatenate(means), np.concatenate(logvars), np.array(owners)


def latent_diagnostics(model: RewardModel, data: PairData, *, context_size: int = 8,
                       contexts_per_user: int = 4, seed: int = 0, threshold: float = 0.01
                       ) -> dict[str, Any]:
    """Does the latent depend on the user? Active units and between- vs within-user spread.

    A unit is active when the variance of its posterior mean across contexts exceeds
    `threshold` (Burda et al., 2016). `between_user_std` is the spread of users' average
    posterior means; `within_user_std` the spread across contexts of one user. A collapsed
    latent has no active units and both spreads near zero.
    """
    if not isinstance(model, LatentRewardModel):
        return {}
    means, logvars, owner = posterior_means(model, data, context_size=context_size,
                                            contexts_per_user=contexts_per_user, seed=seed)
    centers, within = _user_spread(means, owner)
    active = means.var(0) > threshold
    return {
        "latent_dim": int(means.shape[1]),
        "active_units": int(active.sum()),
        "between_user_std": float(np.sqrt(centers.var(0).sum())),
        "within_user_std": float(np.sqrt(within.sum())),
        "mean_posterior_std": float(np.exp(0.5 * logvars).mean()),
    }
