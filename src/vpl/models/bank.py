"""The latent bank: an empirical-Bayes posterior over stored latents of training users.

After training, the latents of (up to `size`) training users are stored with the weights. A
new user's posterior is the bank reweighted by the likelihood of their context,
    w_m  proportional to  p(context | z_m),
so the population itself is the prior, clusters and all, and nothing is trained per user.
With an empty context the weights are uniform: the prediction is the population's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vpl.models.base import Posterior


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

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        key = prefix + "latents"
        if key in state_dict:  # the bank's size is whatever was saved
            self.latents = torch.zeros_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def fill(self, z: torch.Tensor, seed: int = 0) -> None:
        """Store latents z (N, Z): all of them, or a seeded random `size` of them."""
        keep = torch.from_numpy(subsample_rows(z.shape[0], self.size, seed)).to(z.device)
        self.latents = z[keep].detach().clone()

    def weights(self, log_lik: torch.Tensor) -> torch.Tensor:
        """Posterior weights (B, M) from log p(context | z_m) (B, M) under a uniform prior."""
        return torch.softmax(log_lik, dim=-1)

    def posterior(self, log_lik: torch.Tensor, logvar_range: tuple[float, float] | None = None
                  ) -> Posterior:
        """The bank posterior summarized as a diagonal Gaussian (weighted mean and variance),
        its log-variance clamped to `logvar_range` if given."""
        w = self.weights(log_lik)  # (B, M)
        mean = w @ self.latents  # (B, Z)
        var = w @ self.latents.pow(2) - mean.pow(2)
        logvar = var.clamp_min(0.0).add(1e-12).log()
        return Posterior(mean, logvar if logvar_range is None else logvar.clamp(*logvar_range))

    def particles(self, log_lik: torch.Tensor, max_particles: int = 256,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One user's posterior as weighted latents (S, Z), weights (S,) from log_lik (M,): the
        bank itself, or `max_particles` draws from it (duplicates merged) when larger."""
        w = self.weights(log_lik)
        if len(self) > max_particles:
            draw = torch.multinomial(w, max_particles, replacement=True, generator=generator)
            idx, counts = torch.unique(draw, return_counts=True)
            return self.latents[idx], counts.float() / max_particles
        return self.latents, w
