"""How far to personalize: chosen on held-out training users, never on test users.

Two settings decide how much a new user's few comparisons move their predictions:

* the latent bank's temperature tau: the bank posterior is w_m proportional to
  p(context | z_m)^tau. With noisy raters a few comparisons look more decisive than they are,
  and tau = 1 (Bayes' rule) commits a user to the few latents that happen to fit them; tau = 0
  keeps the population's prediction;
* the strength of per-user item effects (`vpl.models.effects`): offsets for the items of the
  user's own context.

Both are chosen on users the model was not trained on: the training loop keeps a share of the
training users out of training for this (`TrainConfig.selection_users`), and they are scored
on their own pairs with contexts of K of their other pairs. (Users the decoder was trained on
look more predictable than new ones even with their own latents hidden from the bank, and
would ask for more personalization than new users bear out.) Where there are too few users
to hold any out, the training users are split into folds instead, and for each fold the bank
forgets that fold's users (their latents are hidden). The score is the mean log-likelihood (a proper score: it punishes confident mistakes, not only
wrong signs). tau is chosen first, on the pairs that share no item with their context: that
is what tells whether the latent transfers to new items (on pairs that share items, a latent
that merely fits the context's items looks good). The item-effect strength is chosen next, on
all pairs (it changes only those that share items). A setting that personalizes is kept only
where its gain over none is significant, paired over users (`choose`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from vpl.data.pairs import PairData
from vpl.models.bank import CONTEXT_SIZES, LatentBank

GRID = (0.0, 0.125, 0.25, 0.5, 1.0)
"""Temperatures tried."""

EFFECT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""Item-effect strengths (prior variances) tried."""


MAX_HELD_OUT = 2000
"""Most held-out users a setting is scored on (a random subset of more): enough to tell the
settings apart, and the cost of choosing stays bounded however many users there are."""


class HeldOutUsers:
    """Users to score settings on: the pairs of users held out of training (one group), or
    folds of training users, each scored with its own latents hidden from the bank."""

    def __init__(self, model: torch.nn.Module, bank: LatentBank | None, train: PairData, *,
                 held_out: PairData | None = None, folds: int = 3, users_per_fold: int = 100,
                 max_held_out: int = MAX_HELD_OUT, ks: Sequence[int] = (2, 8), seed: int = 0
                 ) -> None:
        self.model, self.bank, self.ks, self.seed = model, bank, tuple(ks), seed
        if held_out is not None:
            users = np.unique(held_out.user)
            if len(users) > max_held_out:  # a seeded random subset bounds the cost at scale
                keep = np.random.default_rng(seed).choice(users, max_held_out, replace=False)
                held_out = held_out.subset(np.flatnonzero(np.isin(held_out.user, keep)))
            self.folds, self.data = [np.array([], dtype=np.int64)], [held_out]
            return
        users = np.unique(train.user)
        assign = np.random.default_rng(seed).permutation(len(users)) % folds
        self.folds = [users[assign == f][:users_per_fold] for f in range(folds)]
        self.data = [train.subset(np.flatnonzero(np.isin(train.user, u))) for u in self.folds]

    @torch.no_grad()
    def loglik(self, apply: Callable[[float], None], values: Sequence[float], *,
               item_disjoint: bool) -> np.ndarray:
        """Log-likelihood per user (len(values), len(ks), users) of each value set by `apply`
        at each K: the mean over the user's pairs, every pair or only those that share no item
        with their context (NaN for a user without such pairs). The contexts are the same for
        every value, and each batch is scored for all values through one `scorer`."""
        from vpl.evaluate import context_batches, pair_contexts

        out: list[np.ndarray] = []
        was = self.model.training
        self.model.eval()
        try:
            for users, held in zip(self.folds, self.data, strict=True):
                if self.bank is not None and self.bank.owners is not None:
                    self.bank.hidden = torch.from_numpy(np.isin(self.bank.owners, users)).to(
                        self.bank.latents.device)
                self.model.bind(held)
                device = next(self.model.parameters()).device
                fold = np.zeros((len(values), len(self.ks), len(held.users)))
                for j, k in enumerate(self.ks):
                    ctx, disjoint = pair_contexts(held, held, k, self.seed)
                    logits = np.empty((len(values), len(held)))
                    for rows, batch in context_batches(
                            held, held, ctx, device=str(device),
                            distinct=self.model.reads_distinct_contexts):
                        score = self.model.scorer(batch)
                        for i, v in enumerate(values):
                            apply(v)
                            logits[i, rows] = score()[:, 0].double().cpu().numpy()
                    keep = disjoint if item_disjoint else np.ones(len(held), dtype=bool)
                    for i in range(len(values)):
                        fold[i, j] = _user_loglik(logits[i], held.user, keep, len(held.users))
                present = np.unique(held.user)
                out.append(fold[:, :, present])
        finally:
            if self.bank is not None:
                self.bank.hidden = None
            self.model.train(was)
        return np.concatenate(out, axis=2)


def _user_loglik(logits: np.ndarray, user: np.ndarray, keep: np.ndarray, n: int
                 ) -> np.ndarray:
    """Mean log-likelihood (n,) of each user's kept pairs from their log-odds (NaN without
    any)."""
    total = np.bincount(user[keep], -np.logaddexp(0.0, -logits[keep]), n)
    count = np.bincount(user[keep], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


SIGNIFICANCE = 2.0
"""How many standard errors (over users) a setting's gain in log-likelihood over the first
value of its grid (no personalization) must reach to be chosen."""


def choose(per_user: np.ndarray, z: float = SIGNIFICANCE) -> tuple[int, np.ndarray]:
    """(index of the chosen value, mean log-likelihood of each) from per-user log-likelihoods
    (values, users): the best value among those whose mean gain over value 0, paired by user,
    exceeds `z` standard errors; value 0 when none does. Personalization has to be earned."""
    ok = ~np.isnan(per_user).any(0)
    ll = per_user[:, ok]
    if not ll.shape[1]:
        return 0, np.full(len(per_user), np.nan)
    means = ll.mean(1)
    gain = ll - ll[0]
    se = gain.std(1, ddof=1) / np.sqrt(gain.shape[1]) if gain.shape[1] > 1 else np.full(
        len(ll), np.inf)
    earned = gain.mean(1) > z * se
    earned[0] = True
    best = int(np.argmax(np.where(earned, means, -np.inf)))
    return best, means


def _enough(train: PairData, held_out: PairData | None, min_users: int) -> bool:
    return held_out is not None or len(np.unique(train.user)) >= min_users


def select_temperature(model: torch.nn.Module, bank: LatentBank, train: PairData, *,
                       held_out: PairData | None = None, taus: Sequence[float] = GRID,
                       folds: int = 3, min_users: int = 10, users_per_fold: int = 100,
                       seed: int = 0) -> dict[str, float]:
    """Set `bank.temperature`, for each context size of `CONTEXT_SIZES`, to the tau of `taus`
    (0 first) with the best log-likelihood of held-out users with contexts of that size, on
    pairs that share no item with their context, if its gain over 0 is significant (`choose`;
    see the module docstring):
    the users of `held_out`, or else folds of the training users. Without held-out users,
    with fewer than `min_users` training users or a bank without owners, the temperature
    stays as it is. At most `users_per_fold` users of each fold are scored. Returns the
    chosen taus and the log-likelihood of each."""
    if not len(bank) or (held_out is None and (bank.owners is None
                                               or not _enough(train, None, min_users))):
        return {}
    before = bank.temperature.clone()
    cv = HeldOutUsers(model, bank, train, held_out=held_out, folds=folds,
                      users_per_fold=users_per_fold, ks=CONTEXT_SIZES, seed=seed)
    try:
        ll = cv.loglik(lambda t: bank.temperature.fill_(t), taus, item_disjoint=True)
    finally:
        bank.temperature.copy_(before)
    out, chosen = {}, []
    for j, k in enumerate(CONTEXT_SIZES):
        best, means = choose(ll[:, j])
        chosen.append(float(taus[best]))
        out[f"bank_temperature_k{k}"] = chosen[-1]
        out.update({f"bank_loglik_k{k}_tau_{t:g}": float(v) for t, v in zip(taus, means,
                                                                             strict=True)})
    bank.temperature.copy_(torch.tensor(chosen))
    return out


def select_item_effects(model: torch.nn.Module, strength: torch.Tensor, train: PairData,
                        bank: LatentBank | None = None, *, held_out: PairData | None = None,
                        grid: Sequence[float] = EFFECT_GRID, ks: Sequence[int] = (2, 8, 16),
                        folds: int = 3, min_users: int = 10, users_per_fold: int = 100,
                        seed: int = 0) -> dict[str, float]:
    """Fill the buffer `strength` with the item-effect strength of `grid` (0 first) with the
    best (and significant: `choose`) log-likelihood on all pairs of the users of `held_out`, or else cross-validated over
    folds of the training users (0 with fewer than `min_users` of them). Returns the chosen
    strength and the log-likelihood of each."""
    if not _enough(train, held_out, min_users):
        strength.fill_(0.0)
        return {}
    cv = HeldOutUsers(model, bank, train, held_out=held_out, folds=folds,
                      users_per_fold=users_per_fold, ks=ks, seed=seed)
    best, ll = choose(cv.loglik(lambda s: strength.fill_(s), grid,
                                item_disjoint=False).mean(1))
    strength.fill_(float(grid[best]))
    return {"item_effects": float(grid[best]),
            **{f"item_effects_loglik_{g:g}": float(v) for g, v in zip(grid, ll, strict=True)}}
