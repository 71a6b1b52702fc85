"""Sequential query selection for one user (`ActiveSession`) and its simulation over many users.

A session holds a candidate pool and the comparisons the user has answered; the posterior
q(z | answered) is re-encoded after every answer. `run_active` simulates unseen users of a data
set: each user's pairs are split into a query pool and item-disjoint evaluation pairs, the
data's labels play the user, and accuracy on the evaluation pairs (z = posterior mean) is
recorded after 0, 1, ..., budget answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vpl.active.acquisition import (
    STRATEGIES,
    CandidatePool,
    Predictive,
    candidate_logits,
    latent_particles,
    posterior_entropy,
    posterior_variance,
    predictive,
    reward_matrix,
    select_queries,
)
from vpl.data.pairs import PairData
from vpl.models.base import Posterior, RewardModel
from vpl.stats import mean_ci

log = logging.getLogger(__name__)


class ActiveSession:
    """Ask one user the most useful comparisons of a pool, one (or a batch) at a time.

    Usage::

        session = ActiveSession(model, pool)    # pool: CandidatePool or PairData
        q = session.next_query()                # index into the pool
        session.answer(q, label)                # label 1: the pool's first response won
        z = session.latent()                    # posterior mean (Z,)
    """

    def __init__(self, model: RewardModel, pool: CandidatePool | PairData, *,
                 strategy: str = "info-gain", samples: int = 16, seed: int = 0,
                 labelings: int = 4) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        self.model = model.eval()
        self.pool = pool if isinstance(pool, CandidatePool) else CandidatePool.from_pairs(pool)
        self.strategy = strategy
        self.samples = samples
        self.labelings = labelings
        self.generator = torch.Generator().manual_seed(seed)
        self.asked: list[int] = []
        self.labels: list[int] = []
        self.pending: list[int] = []
        self.skipped: list[int] = []
        self._post: Posterior | None = None

    @property
    def remaining(self) -> int:
        """Candidates not yet answered, pending or discarded."""
        return len(self.pool) - len(self.asked) - len(self.pending) - len(self.skipped)

    def _excluded(self) -> torch.Tensor:
        ban = torch.zeros(len(self.pool), dtype=torch.bool)
        ban[self.asked + self.pending + self.skipped] = True
        return ban

    def context(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Answered pairs as item vectors, preferred response first: (K, D) each."""
        q = torch.tensor(self.asked, dtype=torch.long)
        y = torch.tensor(self.labels, dtype=torch.bool).unsqueeze(-1)  # (K, 1)
        f = self.pool.items[self.pool.first[q]]  # (K, D)
        s = self.pool.items[self.pool.second[q]]
        return torch.where(y, f, s), torch.where(y, s, f)

    def next_batch(self, size: int) -> list[int]:
        """The next `size` queries (fewer if the pool runs out), never one asked before."""
        if self.remaining <= 0:
            raise IndexError("the candidate pool is exhausted")
        a, b = self.context()
        chosen, _ = select_queries(self.model, self.pool, a, b, self.strategy, batch=size,
                                   exclude=self._excluded(), samples=self.samples,
                                   generator=self.generator, labelings=self.labelings)
        self.pending.extend(chosen)
        return chosen

    def next_query(self) -> int:
        """The single most useful query to ask next (an index into the pool)."""
        return self.next_batch(1)[0]

    def answer(self, query: int, label: int | bool) -> None:
        """Record the user's answer: label 1/True if the first response of `query` won."""
        query = int(query)
        if query in self.asked or query in self.skipped:
            raise ValueError(f"query {query} was already answered")
        if not 0 <= query < len(self.pool):
            raise IndexError(f"query {query} is not in the pool of {len(self.pool)}")
        if query in self.pending:
            self.pending.remove(query)
        self.asked.append(query)
        self.labels.append(int(bool(label)))
        self._post = None

    def discard(self, query: int) -> None:
        """Forget a handed-out query that will not be answered (it is not offered again)."""
        if query in self.pending:
            self.pending.remove(query)
            self.skipped.append(query)

    @torch.no_grad()
    def posterior(self) -> Posterior:
        """q(z | answered comparisons), (1, Z) tensors; re-inferred after each answer (by the
        encoder, or from the latent bank of a VPL model that uses one)."""
        if self._post is None:
            a, b = self.context()
            mask = torch.ones(1, a.shape[0], dtype=torch.bool)
            self._post = self.model.infer(a.unsqueeze(0), b.unsqueeze(0), mask)
        return self._post

    def latent(self) -> torch.Tensor:
        """The user's latent: posterior mean (Z,)."""
        return self.posterior().mean[0]

    def uncertainty(self) -> dict[str, float]:
        """Posterior entropy (nats) and mean variance of q(z | answered)."""
        post = self.posterior()
        return {"entropy": float(posterior_entropy(post)[0]),
                "variance": float(posterior_variance(post)[0])}

    @torch.no_grad()
    def predict(self, pool: CandidatePool | None = None,
                generator: torch.Generator | None = None) -> Predictive:
        """Predictive probability and uncertainty of comparisons (default: this pool's)."""
        a, b = self.context()
        z, w = latent_particles(self.model, a, b, self.samples, generator or self.generator)
        return predictive(candidate_logits(self.model, pool or self.pool, z), w)


def answer_loop(session: ActiveSession, label: Callable[[int], bool], budget: int, batch: int,
                times: list[float]) -> Iterator[tuple[int, Posterior]]:
    """Ask and answer `budget` queries; yields (n, posterior) after 0, 1, ..., budget answers.

    `label(q)` plays the user. `paper` chooses the whole budget before any answer (the paper's
    setting); other strategies choose `batch` at a time. Selection wall times (ms) are appended
    to `times`.
    """
    queue: list[int] = []
    for n in range(budget + 1):
        if n:
            if not queue:
                size = budget if session.strategy == "paper" else min(batch, budget - n + 1)
                t0 = time.perf_counter()
                queue = session.next_batch(size)
                times.append(1e3 * (time.perf_counter() - t0))
            q = queue.pop(0)
            session.answer(q, label(q))
        yield n, session.posterior()


def split_user_pairs(data: PairData, idx: np.ndarray, eval_pairs: int, pool_size: int | None,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(query pool, evaluation pairs) of one user's pair indices `idx`.

    Evaluation pairs are drawn first; the pool takes the other pairs that share no response
    (item key) with them, topped up with sharing pairs only if fewer than `pool_size` remain.
    """
    idx = rng.permutation(idx)
    n_eval = min(eval_pairs, max(len(idx) - 1, 0))
    ev, rest = idx[:n_eval], idx[n_eval:]
    keys = data.item_keys
    ev_keys = set(keys[data.chosen[ev]].tolist()) | set(keys[data.rejected[ev]].tolist())
    clean = np.array([not ({keys[data.chosen[p]], keys[data.rejected[p]]} & ev_keys)
                      for p in rest], dtype=bool)
    ordered = np.concatenate([rest[clean], rest[~clean]])
    want = len(rest) if pool_size is None else pool_size
    return ordered[:want], ev


def shared_pool(data: PairData, ev: np.ndarray, margins: np.ndarray, pool_size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A query pool drawn from every pair of `data`, for a simulated user who can answer any
    comparison: (pair indices, whether the user prefers each pair's `chosen`).

    `margins` (len(data),): the user's utility of each pair's `chosen` minus its `rejected`.
    Pairs that share a response (item key) with the evaluation pairs `ev`, and pairs the user
    is indifferent about (margin 0), are left out; `pool_size` of the rest are drawn at random.
    """
    keys = data.item_keys
    ev_keys = np.unique(np.concatenate([keys[data.chosen[ev]], keys[data.rejected[ev]]]))
    ok = (~np.isin(keys[data.chosen], ev_keys) & ~np.isin(keys[data.rejected], ev_keys)
          & (margins != 0))
    idx = rng.permutation(np.flatnonzero(ok))[:pool_size]
    return idx, margins[idx] > 0


@dataclass
class ActiveResult:
    """Accuracy and posterior uncertainty after 0..budget answers, per simulated user."""

    strategy: str
    users: list[str]
    accuracy: np.ndarray  # (U, budget + 1)
    entropy: np.ndarray  # (U, budget + 1) posterior entropy (nats)
    variance: np.ndarray  # (U, budget + 1) mean posterior variance
    predictive_entropy: np.ndarray | None = None
    """(U, budget + 1) mean predictive entropy H[p(y | answers)] of the evaluation pairs (nats)."""
    select_ms: list[float] = field(default_factory=list)  # wall time of each selection call
    asked: list[list[int]] = field(default_factory=list)  # per user, pair indices of `data`
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def curve(self) -> np.ndarray:
        """Mean accuracy over users after 0..budget answers."""
        return self.accuracy.mean(0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: curve with 95% CI over users, per-user curves, uncertainty, timing."""
        lo, hi = mean_ci(self.accuracy)
        return {
            "strategy": self.strategy,
            "curve": self.curve.tolist(),
            "ci95": [lo.tolist(), hi.tolist()],
            "per_user": {u: a.tolist() for u, a in zip(self.users, self.accuracy, strict=True)},
            "posterior_entropy": self.entropy.mean(0).tolist(),
            "posterior_variance": self.variance.mean(0).tolist(),
            "entropy_accuracy_spearman": entropy_accuracy_correlation(self),
            "predictive_entropy": None if self.predictive_entropy is None
            else self.predictive_entropy.mean(0).tolist(),
            "predictive_entropy_accuracy_spearman": None if self.predictive_entropy is None
            else entropy_accuracy_correlation(self, self.predictive_entropy),
            "select_ms_median": float(np.median(self.select_ms)) if self.select_ms else None,
            "config": self.config,
        }


def queries_to_reach(curve: np.ndarray | list[float], target: float) -> int | None:
    """The fewest answers after which `curve` reaches `target` (None if it never does)."""
    hit = np.flatnonzero(np.asarray(curve) >= target - 1e-12)
    return int(hit[0]) if len(hit) else None


def entropy_accuracy_correlation(result: ActiveResult,
                                 uncertainty: np.ndarray | None = None) -> float:
    """Spearman correlation of uncertainty and accuracy across users, averaged over n >= 1.

    `uncertainty` (U, budget + 1) defaults to the posterior entropy. Computed separately for
    each number of answers n (so the shared trend "more answers, lower entropy, higher
    accuracy" does not count); negative means uncertain users are less accurate.
    """
    from scipy.stats import spearmanr

    unc = result.entropy if uncertainty is None else uncertainty
    rs = []
    for n in range(1, result.accuracy.shape[1]):
        a, e = result.accuracy[:, n], unc[:, n]
        if np.ptp(a) > 0 and np.ptp(e) > 0:
            rs.append(float(spearmanr(e, a).statistic))
    return float(np.mean(rs)) if rs else float("nan")


@torch.no_grad()
def _accuracy(model: RewardModel, items: torch.Tensor, ch: torch.Tensor, rj: torch.Tensor,
              z: torch.Tensor) -> float:
    r = reward_matrix(model, items, z.unsqueeze(0))[0]  # (U,)
    d = r[ch] - r[rj]
    return float(((d > 0).double() + 0.5 * (d == 0).double()).mean())


def _simulate_user(model: RewardModel, data: PairData, pool_idx: np.ndarray,
                   ev_idx: np.ndarray, strategy: str, budget: int, batch: int, samples: int,
                   rng: np.random.Generator, wins: np.ndarray | None = None
                   ) -> tuple[np.ndarray, list[int], list[float]]:
    """One simulated user: (accuracy, posterior entropy, posterior variance, predictive entropy
    of the evaluation pairs) (4, budget + 1), asked pairs, timings. `wins` (pool,): whether the
    user prefers each pool pair's `chosen` response (all True, the data's labels, by default)."""
    flip = rng.random(len(pool_idx)) < 0.5
    answers = ~flip if wins is None else wins != flip
    pool = CandidatePool.from_pairs(data, pool_idx, flip)
    ev_items, inv = np.unique(np.concatenate([data.chosen[ev_idx], data.rejected[ev_idx]]),
                              return_inverse=True)
    ev_x = torch.from_numpy(data.items[ev_items])
    ev_c = torch.from_numpy(inv[: len(ev_idx)]).long()
    ev_r = torch.from_numpy(inv[len(ev_idx):]).long()
    session = ActiveSession(model, pool, strategy=strategy, samples=samples,
                            seed=int(rng.integers(2**31)))
    steps = min(budget, len(pool))
    ev_pool = CandidatePool(ev_x, ev_c, ev_r)
    ev_gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    out = np.full((4, budget + 1), np.nan)
    times: list[float] = []
    for n, post in answer_loop(session, lambda q: bool(answers[q]), steps, batch, times):
        out[0, n] = _accuracy(model, ev_x, ev_c, ev_r, post.mean[0])
        out[1, n] = float(posterior_entropy(post)[0])
        out[2, n] = float(posterior_variance(post)[0])
        out[3, n] = float(session.predict(ev_pool, ev_gen).entropy.mean())
    out[:, steps + 1:] = out[:, steps : steps + 1]
    return out, [int(pool_idx[q]) for q in session.asked], times


def run_active(model: RewardModel, data: PairData, strategy: str, *, budget: int = 8,
               batch: int = 1, pool_size: int | None = None, eval_pairs: int = 16,
               seed: int = 0, samples: int = 16, users: list[int] | None = None,
               progress: bool = True,
               oracle: Callable[[int], np.ndarray] | None = None) -> ActiveResult:
    """Simulate `strategy` on every user of `data` (or `users`), the data's labels answering.

    By default a user is asked their own pairs (the data's labels answer). With `oracle`, a
    simulated user who can answer any comparison: `oracle(u)` gives user u's utility margin
    (chosen minus rejected) of every pair of `data`, and the pool is `pool_size` (default
    1,000) pairs drawn from all of `data` (`shared_pool`); the evaluation pairs are still the
    user's own.

    Splits are seeded by (seed, user) only, so strategies run with one seed see the same pools
    and evaluation pairs. Queries are shown in a random order of their two responses. With
    `paper` the whole budget is chosen once before any answer (the paper's setting); the other
    strategies choose `batch` queries at a time and re-encode after every answer.
    """
    model.eval()
    model.bind(data)
    by_user = data.by_user()
    users = sorted(by_user) if users is None else users
    acc = np.full((len(users), budget + 1), np.nan)
    ent = np.full_like(acc, np.nan)
    var = np.full_like(acc, np.nan)
    pred = np.full_like(acc, np.nan)
    times: list[float] = []
    asked_all: list[list[int]] = []
    for row, u in enumerate(tqdm(users, desc=f"active {strategy}", disable=not progress,
                                 leave=False)):
        rng = np.random.default_rng([seed, u])
        pool_idx, ev_idx = split_user_pairs(data, by_user[u], eval_pairs, pool_size, rng)
        wins = None
        if oracle is not None:
            pool_idx, wins = shared_pool(data, ev_idx, oracle(u), pool_size or 1000, rng)
        curves, asked, ms = _simulate_user(model, data, pool_idx, ev_idx, strategy, budget,
                                           batch, samples, rng, wins)
        acc[row], ent[row], var[row], pred[row] = curves
        asked_all.append(asked)
        times.extend(ms)
    cfg = {"budget": budget, "batch": batch, "pool_size": pool_size, "eval_pairs": eval_pairs,
           "seed": seed, "samples": samples, "pool": "own" if oracle is None else "shared"}
    return ActiveResult(strategy=strategy, users=[data.users[u] for u in users], accuracy=acc,
                        entropy=ent, variance=var, predictive_entropy=pred, select_ms=times,
                        asked=asked_all, config=cfg)


def time_selection(model: RewardModel, data: PairData, strategy: str, *, pool_size: int = 1000,
                   answered: int = 4, repeats: int = 20, samples: int = 16, seed: int = 0
                   ) -> float:
    """Median milliseconds to choose one query from a pool of `pool_size` pairs of `data`."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(data), size=min(pool_size, len(data)), replace=False)
    session = ActiveSession(model, CandidatePool.from_pairs(data, idx), strategy=strategy,
                            samples=samples, seed=seed)
    for q in range(answered):
        session.answer(q, 1)
    ms = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        q = session.next_query()
        ms.append(1e3 * (time.perf_counter() - t0))
        session.pending.remove(q)
    return float(np.median(ms[1:]))
