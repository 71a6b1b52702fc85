"""The latent bank: an empirical-Bayes posterior over stored latents of training users.

After training, the latents of (up to `size`) training users are stored with the weights. A
new user's posterior is the bank reweighted by the likelihood of their context,
    w_m  proportional to  p(context | z_m),
so the population itself is the prior, clusters and all, and nothing is trained per user.
With an empty context the weights are uniform: the prediction is the population's.

A temperature tau in [0, 1] tempers the likelihood, w_m proportional to p(context | z_m)^tau
(a power posterior): 0 keeps every user at the population's prediction, 1 is Bayes' rule.
Noisy raters make a few comparisons look more decisive than they are, the more so the more
of them there are when they share items (they are not independent given z), so tau is kept
per context size: one value for each size of `CONTEXT_SIZES`, a context of n pairs using the
largest size <= n. The values are chosen on held-out training users (`vpl.train.temper`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vpl.models.base import Posterior

CONTEXT_SIZES = (1, 2, 4, 8, 16, 32)
"""Context sizes with a temperature of their own (larger contexts use the last)."""


def subsample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """Which of n rows a bank of `size` keeps: all of them, or a seeded random sorted subset."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


class LatentBank(nn.Module):
    """Stored latents (M, Z) and the posterior they give a context with log-likelihoods (B, M)."""

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.dim, self.size = dim, size
        self.register_buffer("latents", torch.zeros(0, dim))
        self.register_buffer("temperature", torch.ones(len(CONTEXT_SIZES)))
        self.owners: np.ndarray | None = None
        """User index (of the data it was filled from) of each stored latent, if known."""
        self.hidden: torch.Tensor | None = None
        """(M,) True for stored latents the posterior ignores for now (held-out users)."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        key = prefix + "latents"
        if key in state_dict:  # the bank's size is whatever was saved
            self.latents = torch.zeros_like(state_dict[key])
        tau = state_dict.get(prefix + "temperature", torch.tensor(1.0))
        if tau.dim() == 0:  # older checkpoints: one temperature for every context size
            state_dict[prefix + "temperature"] = tau.expand(len(CONTEXT_SIZES)).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def fill(self, z: torch.Tensor, seed: int = 0, owners: np.ndarray | None = None) -> None:
        """Store latents z (N, Z) of users `owners` (N,): all of them, or a seeded random
        `size` of them."""
        rows = subsample_rows(z.shape[0], self.size, seed)
        self.latents = z[torch.from_numpy(rows).to(z.device)].detach().clone()
        self.owners = None if owners is None else np.asarray(owners)[rows]
        self.hidden = None

    def tau(self, n_pairs: torch.Tensor) -> torch.Tensor:
        """The temperature (B,) for contexts of `n_pairs` (B,) pairs."""
        sizes = torch.tensor(CONTEXT_SIZES, device=n_pairs.device)
        idx = (torch.searchsorted(sizes, n_pairs.to(sizes.dtype), right=True) - 1).clamp_min(0)
        return self.temperature.to(n_pairs.device)[idx]

    def weights(self, log_lik: torch.Tensor, n_pairs: torch.Tensor) -> torch.Tensor:
        """Posterior weights (B, M) from log p(context | z_m) (B, M) of contexts of `n_pairs`
        (B,) pairs: a uniform prior times the likelihood to the power `tau(n_pairs)`, over the
        latents not `hidden`."""
        return torch.softmax(self._tempered(log_lik, n_pairs), dim=-1)

    def log_weights(self, log_lik: torch.Tensor, n_pairs: torch.Tensor) -> torch.Tensor:
        """The log of `weights`, computed stably."""
        return torch.log_softmax(self._tempered(log_lik, n_pairs), dim=-1)

    def _tempered(self, log_lik: torch.Tensor, n_pairs: torch.Tensor) -> torch.Tensor:
        """log_lik times the temperature of its context size, -inf for the `hidden` latents."""
        if not bool((self.temperature == 1.0).all()):
            log_lik = self.tau(n_pairs).unsqueeze(-1).to(log_lik.dtype) * log_lik
        if self.hidden is not None:
            log_lik = log_lik.masked_fill(self.hidden.to(log_lik.device), float("-inf"))
        return log_lik

    def posterior(self, log_lik: torch.Tensor, n_pairs: torch.Tensor,
                  logvar_range: tuple[float, float] | None = None) -> Posterior:
        """The bank posterior summarized as a diagonal Gaussian (weighted mean and variance),
        its log-variance clamped to `logvar_range` if given."""
        w = self.weights(log_lik, n_pairs)  # (B, M)
        mean = w @ self.latents  # (B, Z)
        var = w @ self.latents.pow(2) - mean.pow(2)
        logvar = var.clamp_min(0.0).add(1e-12).log()
        return Posterior(mean, logvar if logvar_range is None else logvar.clamp(*logvar_range))

    def particles(self, log_lik: torch.Tensor, n_pairs: int, max_particles: int = 256,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One user's posterior as weighted latents (S, Z), weights (S,) from log_lik (M,) of
        `n_pairs` answered pairs: the bank itself, or `max_particles` draws from it
        (duplicates merged) when larger."""
        w = self.weights(log_lik.unsqueeze(0), torch.tensor([n_pairs]))[0]
        if len(self) > max_particles:
            draw = torch.multinomial(w, max_particles, replacement=True, generator=generator)
            idx, counts = torch.unique(draw, return_counts=True)
            return self.latents[idx], counts.float() / max_particles
        return self.latents, w
