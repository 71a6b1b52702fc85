"""Posterior uncertainty and acquisition functions for choosing a user's next comparisons.

All strategies share one core, `select_queries`: a greedy loop that scores every candidate of a
pool at once and takes the best, B times for a batch. What differs is the score:

- ``random``: independent uniform noise, i.e. a uniformly random subset.
- ``info-gain``: expected information gain about the user latent z (BALD),
  ``I(z; y | q) = H[p(y | q, ctx)] - E_{z ~ q(z | ctx)} H[p(y | q, z)]``, estimated with S
  posterior samples; p(y | q, ctx) is the sample average of p(y | q, z), so both labels are
  weighted by their predicted probability. With a VPL model that infers z from its latent
  bank (the default in `head` mode) the samples are the bank's latents with their posterior
  weights (an exact posterior over a finite set, multimodal where the user is ambiguous),
  resampled to at most `max_particles`. For a batch the greedy score is the joint information
  gain of the chosen labels and the candidate's (BatchBALD, Kirsch et al. 2019), exact while
  the chosen labels have at most `max_configs` joint configurations.
- ``epig``: expected *predictive* information gain (Bickford Smith et al. 2023): the
  information a candidate's label carries about the labels of comparisons the user will be
  scored on, ``E_{x*} I(y; y* | q, x*, ctx)``, with x* drawn from the pool itself (at most
  `targets` of them). BALD values any information about z, also information that changes no
  prediction (two latents that rank every pair alike); EPIG counts only what moves
  predictions. Same particles as ``info-gain``; for a batch the chosen labels' joint
  configurations enter as in BatchBALD (at most `max_configs_epig` of them).
- ``paper``: our reading of the variance-based set criterion of the VPL paper (Poddar et al.,
  2024): a candidate is scored by the variance of the amortized posterior
  q(z | ctx + chosen + candidate), averaged over the dimensions of z and *uniformly* over the
  candidate's two labels (and over uniformly drawn labelings of the queries chosen before it
  in the same batch); lower is better. Only variances enter, never predicted label
  probabilities. The session picks a whole budget with it once (see `vpl.active.session`).

The sampled scoring is one tensor program: S latents (S, Z), a reward matrix for the pool's
items (S, U), a gather to reward differences of all N candidates (S, N). For VPL's two reward
parameterizations the reward matrix is computed without repeating item-only work per sample
(exactly equal to `VPL.reward`; checked in the tests).

References: Houlsby et al. (2011), "Bayesian Active Learning for Classification and Preference
Learning"; Kirsch et al. (2019), "BatchBALD"; Bickford Smith et al. (2023), "Prediction-Oriented
Bayesian Active Learning", AISTATS; Poddar et al. (2024), "Personalizing RLHF with
Variational Preference Learning", NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from vpl.data.pairs import PairData
from vpl.losses import noisy_logits
from vpl.models.base import Posterior, RewardModel
from vpl.models.latent import LatentRewardModel

STRATEGIES: tuple[str, ...] = ("random", "info-gain", "epig", "paper")
_LOG_2PI_E = math.log(2.0 * math.pi) + 1.0


@dataclass(frozen=True)
class CandidatePool:
    """N candidate comparisons over U item vectors: candidate n shows items first[n], second[n].

    A label y = 1 means the user prefers `first` over `second`.
    """

    items: torch.Tensor  # (U, D)
    first: torch.Tensor  # (N,) long
    second: torch.Tensor  # (N,) long
    cache: dict[Any, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)
    """Item-only activations per model, reused across selections (keyed by weight versions)."""

    def __len__(self) -> int:
        return int(self.first.shape[0])

    @classmethod
    def from_vectors(cls, first: np.ndarray | torch.Tensor, second: np.ndarray | torch.Tensor
                     ) -> CandidatePool:
        """A pool from the two responses' vectors of each candidate, (N, D) each."""
        a = torch.as_tensor(np.asarray(first, dtype=np.float32))
        b = torch.as_tensor(np.asarray(second, dtype=np.float32))
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"expected two (N, D) arrays of equal shape, got {tuple(a.shape)} "
                             f"and {tuple(b.shape)}")
        n = a.shape[0]
        return cls(torch.cat([a, b]), torch.arange(n), torch.arange(n, 2 * n))

    @classmethod
    def from_pairs(cls, data: PairData, idx: np.ndarray | None = None,
                   flip: np.ndarray | None = None) -> CandidatePool:
        """Pairs `idx` of `data` (default all) as candidates, first = chosen unless `flip`."""
        idx = np.arange(len(data)) if idx is None else np.asarray(idx, dtype=np.int64)
        a, b = data.chosen[idx], data.rejected[idx]
        if flip is not None:
            a, b = np.where(flip, b, a), np.where(flip, a, b)
        uniq, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
        n = len(idx)
        return cls(torch.from_numpy(data.items[uniq]), torch.from_numpy(inv[:n]).long(),
                   torch.from_numpy(inv[n:]).long())


@dataclass(frozen=True)
class Predictive:
    """Predictive uncertainty of N comparisons for one user, each (N,)."""

    prob: torch.Tensor
    """p(first preferred | context), averaged over posterior samples."""
    entropy: torch.Tensor
    """H[p(y | context)] in nats: total predictive uncertainty."""
    mutual_info: torch.Tensor
    """I(z; y | context) in nats: the part of it that is uncertainty about the user (BALD)."""


def _check_latent_model(model: RewardModel) -> LatentRewardModel:
    if not isinstance(model, LatentRewardModel):
        raise ValueError(f"active query selection needs a latent-variable model (e.g. 'vpl'); "
                         f"got {model.name!r}")
    return model


def posterior_entropy(post: Posterior) -> torch.Tensor:
    """Differential entropy (nats) of each diagonal Gaussian q(z | context): (B, Z) -> (B,)."""
    return 0.5 * (post.logvar + _LOG_2PI_E).sum(-1)


def posterior_variance(post: Posterior) -> torch.Tensor:
    """Mean over latent dimensions of the posterior variance: (B, Z) -> (B,)."""
    return post.logvar.exp().mean(-1)


def latent_particles(model: RewardModel, ctx_a: torch.Tensor, ctx_b: torch.Tensor, samples: int,
                     generator: torch.Generator | None = None, *, max_particles: int = 256
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted latents (S, Z) and weights (S,) (summing to 1) representing a user's posterior
    given answered pairs (K, D) x2, preferred first (`LatentRewardModel.particles`): a latent
    bank with its posterior weights (resampled to `max_particles` when larger), a mixture's
    heads, or `samples` draws from the model's posterior."""
    return _check_latent_model(model).particles(ctx_a, ctx_b, samples, generator,
                                                max_particles=max_particles)


def binary_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of Bernoulli(sigmoid(logits)), elementwise, stable for large |logits|."""
    p = torch.sigmoid(logits)
    return -(p * nn.functional.logsigmoid(logits) + (1 - p) * nn.functional.logsigmoid(-logits))


def _entropy_of_probs(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(p * p.clamp_min(1e-30).log()).sum(dim)


def _cached(cache: dict[Any, torch.Tensor] | None, model: nn.Module, weights: torch.Tensor,
            compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """compute() memoized per model and version of `weights` (bumped by in-place updates)."""
    if cache is None:
        return compute()
    key = (id(model), weights._version, weights.data_ptr())
    if key not in cache:
        cache.clear()
        cache[key] = compute()
    return cache[key]


def reward_matrix(model: RewardModel, items: torch.Tensor, z: torch.Tensor,
                  cache: dict[Any, torch.Tensor] | None = None) -> torch.Tensor:
    """Reward of every item (U, D) under every latent (S, Z) -> (S, U).

    The item-only work (`item_part`) is done once per item and kept in `cache` if given, and
    `reward_table` adds the latents.
    """
    lm = _check_latent_model(model)
    part = _cached(cache, lm, lm.item_part_weight, lambda: lm.item_part(items))  # (U, H)
    return lm.reward_table(part, z)  # (S, U)


def candidate_logits(model: RewardModel, pool: CandidatePool, z: torch.Tensor) -> torch.Tensor:
    """Log-odds that `first` beats `second` for all N candidates under all S latents -> (S, N),
    with the model's label noise (`VPLConfig.label_noise`) if it has one."""
    r = reward_matrix(model, pool.items, z, pool.cache)  # (S, U)
    return noisy_logits(r[:, pool.first] - r[:, pool.second],
                        _check_latent_model(model).label_noise)


def predictive(logits: torch.Tensor, weights: torch.Tensor | None = None) -> Predictive:
    """Predictive probability, entropy and mutual information from sampled log-odds (S, N)
    of latents with `weights` (S,) summing to 1 (default: equal)."""
    if weights is None:
        weights = torch.full((logits.shape[0],), 1.0 / logits.shape[0])
    p = weights @ torch.sigmoid(logits)  # (N,)
    total = _entropy_of_probs(torch.stack([p, 1 - p], -1))  # (N,)
    aleatoric = weights @ binary_entropy(logits)  # (N,)
    return Predictive(prob=p, entropy=total, mutual_info=(total - aleatoric).clamp_min(0.0))


def info_gain(logits: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """BALD: I(z; y | q) for each candidate from sampled log-odds (S, N) -> (N,), in nats."""
    return predictive(logits, weights).mutual_info


@dataclass
class _Context:
    """One user's answered comparisons as item vectors, preferred response first: (K, D)."""

    a: torch.Tensor
    b: torch.Tensor


def _paper_scores(model: RewardModel, pool: CandidatePool, ctx: _Context, chosen: list[int],
                  labelings: int, gen: torch.Generator) -> torch.Tensor:
    """Minus the posterior variance after adding each candidate, labels weighted uniformly."""
    n, t = len(pool), len(chosen)
    if t and 2**t <= labelings:  # all labelings of the chosen queries, exactly
        ys = torch.tensor([[(c >> i) & 1 for i in range(t)] for c in range(2**t)],
                          dtype=torch.bool)  # (L, t)
    else:
        ys = torch.randint(0, 2, (labelings if t else 1, t), generator=gen).bool()  # (L, t)
    n_lab = ys.shape[0]
    sel = torch.tensor(chosen, dtype=torch.long)
    f, s = pool.items[pool.first], pool.items[pool.second]  # (N, D)
    # chosen queries under each labeling: preferred / other, (L, t, D)
    ca = torch.where(ys.unsqueeze(-1), f[sel].unsqueeze(0), s[sel].unsqueeze(0))
    cb = torch.where(ys.unsqueeze(-1), s[sel].unsqueeze(0), f[sel].unsqueeze(0))
    # candidate with label 1 (first preferred) and label 0: (N, 2, D)
    qa = torch.stack([f, s], 1)
    qb = torch.stack([s, f], 1)
    d = f.shape[1]
    ext_a = torch.cat([ca.view(1, n_lab, 1, t, d).expand(n, -1, 2, -1, -1),
                       qa.view(n, 1, 2, 1, d).expand(-1, n_lab, -1, -1, -1)], dim=3)
    ext_b = torch.cat([cb.view(1, n_lab, 1, t, d).expand(n, -1, 2, -1, -1),
                       qb.view(n, 1, 2, 1, d).expand(-1, n_lab, -1, -1, -1)], dim=3)
    post = _check_latent_model(model).extended_posteriors(
        ctx.a, ctx.b, ext_a.reshape(n * n_lab * 2, t + 1, d),
        ext_b.reshape(n * n_lab * 2, t + 1, d))  # (N*L*2, Z)
    return -posterior_variance(post).view(n, n_lab * 2).mean(1)  # (N,)


def _batch_info_gain(p_joint: torch.Tensor, p1: torch.Tensor, cond: torch.Tensor,
                     cond_chosen: float, weights: torch.Tensor) -> torch.Tensor:
    """Joint information gain of the chosen labels plus each candidate's (BatchBALD).

    p_joint: (S, C) probability of each configuration of the chosen labels per sample;
    p1: (S, N) p(y = 1 | z_s) per candidate; cond: (N,) E_z H[y_n | z]; weights: (S,) of the
    samples, summing to 1.
    """
    m1 = p_joint.T @ (weights.unsqueeze(1) * p1)  # (C, N): p(config, y_n = 1)
    m0 = (weights @ p_joint).unsqueeze(1) - m1  # (C, N)
    h_joint = _entropy_of_probs(m1, 0) + _entropy_of_probs(m0.clamp_min(0.0), 0)  # (N,)
    return h_joint - cond - cond_chosen


def _xlogx(p: torch.Tensor) -> torch.Tensor:
    return p * p.clamp_min(1e-30).log()


def predictive_info_gain(p1: torch.Tensor, t1: torch.Tensor, weights: torch.Tensor,
                         p_joint: torch.Tensor | None = None) -> torch.Tensor:
    """EPIG: mean over targets of I((y_chosen, y_n); y_target) for each candidate n, in nats.

    p1: (S, N) p(y_n = 1 | z_s) of the candidates; t1: (S, M) the same for M target
    comparisons; weights: (S,) of the latents, summing to 1; p_joint: (S, C) probability of
    each joint configuration of labels already chosen for the batch (default: none chosen).
    Labels are independent given z, so every joint is a weighted sum over the S latents.
    Returns (N,).
    """
    s, n = p1.shape
    if p_joint is None:
        p_joint = torch.ones(s, 1, dtype=p1.dtype)
    wc = weights.unsqueeze(1) * p_joint  # (S, C)
    # (S, C*2*N): weight of each latent times p(config c, y_n = a | z)
    x = torch.cat([wc.unsqueeze(2) * p1.unsqueeze(1), wc.unsqueeze(2) * (1 - p1).unsqueeze(1)],
                  dim=1).reshape(s, -1)
    hx = -_xlogx(x.sum(0)).reshape(-1, n).sum(0)  # (N,) H(y_chosen, y_n)
    pt = weights @ t1  # (M,)
    hy = -(_xlogx(pt) + _xlogx(1 - pt))  # (M,) H(y_target)
    j1, j0 = x.T @ t1, x.T @ (1 - t1)  # (C*2*N, M) joint with y_target = 1 / 0
    hxy = -(_xlogx(j1) + _xlogx(j0)).reshape(-1, n, t1.shape[1]).sum(0)  # (N, M)
    return (hx.unsqueeze(1) + hy.unsqueeze(0) - hxy).clamp_min(0.0).mean(1)


@torch.no_grad()
def select_queries(model: RewardModel, pool: CandidatePool, ctx_a: torch.Tensor,
                   ctx_b: torch.Tensor, strategy: str, *, batch: int = 1,
                   exclude: torch.Tensor | None = None, samples: int = 16,
                   generator: torch.Generator | None = None, labelings: int = 4,
                   max_configs: int = 1024, targets: int = 256,
                   max_configs_epig: int = 16) -> tuple[list[int], torch.Tensor]:
    """Greedily pick `batch` candidates of `pool` for a user with answered pairs ctx_a/ctx_b.

    ctx_a, ctx_b: (K, D) preferred / other response of each answered pair; exclude: (N,) bool,
    True for candidates that may not be picked (e.g. already asked). Returns the chosen indices
    and the scores (N,) of the first greedy step (-inf where excluded). `targets`: how many
    pool comparisons (drawn at random, asked ones included) stand for the target distribution
    of ``epig``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    _check_latent_model(model)
    n = len(pool)
    banned = torch.zeros(n, dtype=torch.bool) if exclude is None else exclude.clone()
    batch = min(batch, int((~banned).sum()))
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    ctx = _Context(ctx_a, ctx_b)
    if strategy in ("info-gain", "epig"):
        z, weights = latent_particles(model, ctx_a, ctx_b, samples, gen)  # (S, Z), (S,)
        logits = candidate_logits(model, pool, z)  # (S, N)
        p1 = torch.sigmoid(logits)
        cond = weights @ binary_entropy(logits)  # (N,)
        p_joint = torch.ones(z.shape[0], 1)  # (S, C)
        cond_chosen = 0.0
        if strategy == "epig":
            pick = torch.randperm(n, generator=gen)[:targets]
            t1 = p1[:, pick]  # (S, M)
    chosen: list[int] = []
    first_scores = torch.empty(0)
    for _ in range(batch):
        if strategy == "random":
            scores = torch.rand(n, generator=gen)
        elif strategy == "info-gain":
            scores = _batch_info_gain(p_joint, p1, cond, cond_chosen, weights)
        elif strategy == "epig":
            scores = predictive_info_gain(p1, t1, weights, p_joint)
        else:
            scores = _paper_scores(model, pool, ctx, chosen, labelings, gen)
        scores = scores.masked_fill(banned, -math.inf)
        if not chosen:
            first_scores = scores
        best = int(torch.argmax(scores))
        chosen.append(best)
        banned[best] = True
        if strategy in ("info-gain", "epig"):
            both = torch.stack([p1[:, best], 1 - p1[:, best]], -1)  # (S, 2)
            p_joint = (p_joint.unsqueeze(-1) * both.unsqueeze(1)).reshape(p1.shape[0], -1)
            cap = max_configs if strategy == "info-gain" else max_configs_epig
            if p_joint.shape[1] > cap:  # keep the most probable configurations
                keep = (weights @ p_joint).topk(cap).indices
                p_joint = p_joint[:, keep]
            cond_chosen += float(cond[best])
    return chosen, first_scores
