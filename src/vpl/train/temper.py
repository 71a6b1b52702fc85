"""Choose the latent bank's temperature on held-out training users.

A new user's bank posterior is w_m proportional to p(context | z_m)^tau. With noisy raters a few
comparisons look more decisive than they are, and tau = 1 commits a user to the few latents
that happen to fit them; tau = 0 keeps the population's prediction. tau is chosen by
cross-validation over users: the training users are split into folds; for each fold the bank
forgets that fold's users (their latents are hidden), and the fold's users are scored on their
own pairs with contexts of K of their other pairs, for K in `ks`. The tau with the best mean
log-likelihood (a proper score: it punishes confident mistakes, not only wrong signs) over
folds and K is kept. Test users are never involved.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vpl.data.pairs import PairData
from vpl.models.bank import LatentBank

GRID = (0.0, 0.125, 0.25, 0.5, 1.0)
"""Temperatures tried."""


def _fold_scores(model: torch.nn.Module, bank: LatentBank, data: PairData, fold_users: np.ndarray,
                 taus: Sequence[float], ks: Sequence[int], seed: int) -> np.ndarray:
    """Mean log-likelihood (len(taus),) of the pairs of `fold_users` under each temperature,
    their own latents hidden from the bank."""
    from vpl.evaluate import evaluate_pairs

    idx = np.flatnonzero(np.isin(data.user, fold_users))
    held = data.subset(idx)
    bank.hidden = torch.from_numpy(np.isin(bank.owners, fold_users)).to(bank.latents.device)
    out = np.zeros(len(taus))
    for i, tau in enumerate(taus):
        bank.temperature.fill_(tau)
        out[i] = -np.mean([evaluate_pairs(model, held, context_size=k, seed=seed).nll()
                           for k in ks])
    return out


def select_temperature(model: torch.nn.Module, bank: LatentBank, train: PairData, *,
                       taus: Sequence[float] = GRID, ks: Sequence[int] = (2, 8),
                       folds: int = 3, min_users: int = 10, users_per_fold: int = 100,
                       seed: int = 0) -> dict[str, float]:
    """Set `bank.temperature` to the tau of `taus` with the best cross-validated
    log-likelihood of held-out training users (see the module docstring). With fewer than
    `min_users` users, or a bank without owners, the temperature stays as it is. At most
    `users_per_fold` users of each fold are scored. Returns the chosen tau and the
    log-likelihood of each."""
    users = np.unique(train.user)
    if bank.owners is None or len(users) < min_users or not len(bank):
        return {}
    rng = np.random.default_rng(seed)
    assign = rng.permutation(len(users)) % folds
    before = float(bank.temperature)
    was = model.training
    model.eval()
    try:
        ll = sum(_fold_scores(model, bank, train, users[assign == f][:users_per_fold], taus, ks,
                              seed) for f in range(folds)) / folds
    finally:
        bank.hidden = None
        bank.temperature.fill_(before)
        model.train(was)
    best = int(np.argmax(ll))
    bank.temperature.fill_(float(taus[best]))
    return {"bank_temperature": float(taus[best]),
            **{f"bank_loglik_tau_{t:g}": float(v) for t, v in zip(taus, ll, strict=True)}}
