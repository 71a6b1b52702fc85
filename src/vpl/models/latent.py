"""The interface of latent-variable reward models: r(x, z) with a posterior q(z | context).

Every personalized model with a user representation implements it (VPL, low-rank,
prototypes, mixture, btl-head), so active selection, control, evaluation and serving use
these methods alone and never ask a model what it can do:

- the reward:  `item_part(items)` (the latent-free work per item, (U, D) -> (U, H)),
  `reward_table(part, z)` (every item under every latent, (S, U)) and `reward(x, z)`
  (items (B, T, D) under one latent per row (B, Z) -> (B, T));
- the posterior: `infer(ctx_chosen, ctx_rejected, ctx_mask)`, a diagonal Gaussian summary
  of q(z | context) per row, and `particles(ctx_a, ctx_b, n)`, one user's posterior as
  weighted latents (exact for a bank or a finite mixture, sampled otherwise);
- the population prior: `prior()`, the posterior given no comparisons.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch

from vpl.data.pairs import ContextBatch
from vpl.losses import noisy_logits
from vpl.models.base import Posterior, RewardModel


def gaussian_draws(post: Posterior, n: int, generator: torch.Generator | None = None, *,
                   antithetic: bool = False) -> torch.Tensor:
    """n samples z ~ N(mean, exp(logvar)) of one posterior ((1, Z) or (Z,)) -> (n, Z).

    `antithetic` pairs every draw mean + sigma * eps with mean - sigma * eps, which lowers
    the variance of Monte Carlo averages at the same cost.
    """
    mean, logvar = post.mean.reshape(-1), post.logvar.reshape(-1)
    if antithetic:
        half = torch.randn((n + 1) // 2, mean.shape[0], generator=generator)
        noise = torch.cat([half, -half])[:n]
    else:
        noise = torch.randn(n, mean.shape[0], generator=generator)
    return mean + noise * (0.5 * logvar).exp()  # (n, Z)


class LatentRewardModel(RewardModel, abc.ABC):
    """A reward r(x, z) for a user latent z inferred from the user's comparisons."""

    uses_context: ClassVar[bool] = True

    @property
    def label_noise(self) -> float:
        """Probability that a label is flipped whatever the rewards (0 for most models)."""
        return float(getattr(self.config, "label_noise", 0.0))

    @abc.abstractmethod
    def item_part(self, items: torch.Tensor) -> torch.Tensor:
        """The latent-free part of the reward of items (U, D) -> (U, H)."""

    @property
    @abc.abstractmethod
    def item_part_weight(self) -> torch.Tensor:
        """The parameter `item_part` depends on first (its version tells when a cache of item
        parts is stale)."""

    @abc.abstractmethod
    def reward_table(self, item_part: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Reward of every item under every latent, (S, U), from `item_part` (U, H), z (S, Z)."""

    @abc.abstractmethod
    def reward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Reward of items x (B, T, D) for users with latents z (B, Z) -> (B, T)."""

    @abc.abstractmethod
    def infer(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
              ctx_mask: torch.Tensor) -> Posterior:
        """q(z | context) used for predictions, from context pairs (B, K, D) x2, mask (B, K)."""

    def particles(self, ctx_a: torch.Tensor, ctx_b: torch.Tensor, samples: int,
                  generator: torch.Generator | None = None, *, max_particles: int = 256
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """One user's posterior given answered pairs (K, D) x2 (preferred first) as weighted
        latents (S, Z) and weights (S,) summing to 1. Default: `samples` antithetic draws from
        the diagonal Gaussian `infer` gives, equally weighted."""
        mask = torch.ones(1, ctx_a.shape[0], dtype=torch.bool, device=ctx_a.device)
        post = self.infer(ctx_a.unsqueeze(0), ctx_b.unsqueeze(0), mask)
        z = gaussian_draws(post, samples, generator, antithetic=True)
        return z, torch.full((z.shape[0],), 1.0 / z.shape[0])

    def extended_posteriors(self, ctx_a: torch.Tensor, ctx_b: torch.Tensor,
                            ext_a: torch.Tensor, ext_b: torch.Tensor) -> Posterior:
        """q(z | context + extra pairs) for M extensions of one user's context: answered pairs
        (K, D) x2, extensions (M, E, D) x2 -> (M, Z) tensors."""
        m, e = ext_a.shape[:2]
        mask = torch.ones(m, ctx_a.shape[0] + e, dtype=torch.bool, device=ctx_a.device)
        a = torch.cat([ctx_a.unsqueeze(0).expand(m, -1, -1), ext_a], dim=1)  # (M, K+E, D)
        b = torch.cat([ctx_b.unsqueeze(0).expand(m, -1, -1), ext_b], dim=1)
        return self.infer(a, b, mask)

    def prior(self) -> Posterior:
        """The population prior: the posterior (1, Z) given no comparisons."""
        dev = self.item_part_weight.device
        empty = torch.zeros(1, 0, self.input_dim, device=dev)
        return self.infer(empty, empty, torch.zeros(1, 0, dtype=torch.bool, device=dev))

    def posterior(self, batch: ContextBatch) -> Posterior:
        return self.infer(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask)

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        """Log-odds (B, T) under the posterior mean latent of each row."""
        z = self.posterior(batch).mean
        return noisy_logits(self.reward(batch.chosen, z) - self.reward(batch.rejected, z),
                            self.label_noise)
