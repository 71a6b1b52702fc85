"""VPL: a variational posterior over a user latent z inferred from the user's comparisons.

q(z | context) = N(mu, diag(sigma^2)) from a pair encoder and a permutation-invariant set
encoder; the reward r(x, z) is conditioned on z. Trained on the ELBO
    E_q[ sum_t log sigmoid(r(c_t, z) - r(r_t, z)) ] - beta * KL(q || N(0, I)),
with the KL weight annealed by the training loop. At evaluation z is the posterior mean.
Reference: Poddar et al. (2024), "Personalizing Reinforcement Learning from Human Feedback
with Variational Preference Learning", NeurIPS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vpl.data.pairs import ContextBatch
from vpl.losses import bradley_terry_nll, kl_with_free_bits
from vpl.models.base import LossOutput, Posterior, RewardModel, register
from vpl.models.layers import PairEncoder, SetEncoder, mlp


@dataclass(frozen=True)
class VPLConfig:
    """Encoder q(z | context) and latent-conditioned reward r(x, z)."""

    latent_dim: int = 16
    """Size of the user latent z."""
    hidden: int = 256
    """Width of the reward MLP and the pair encoder."""
    layers: int = 2
    """Hidden layers of the reward MLP and the pair encoder."""
    set_encoder: str = "attention"
    """How a user's comparisons are pooled: `attention` (seeded self-attention) or `mean`."""
    heads: int = 4
    """Attention heads in the set encoder."""
    beta: float = 0.01
    """Weight of KL(q || prior) relative to the mean per-pair NLL (times the annealing factor)."""
    free_bits: float = 0.0
    """Per-dimension KL floor in nats; > 0 guards against posterior collapse."""
    latent_mode: str = "concat"
    """How z enters the reward: `concat` (MLP on [x, z]) or `head` (z sets a per-user linear
    head on shared reward features, r = phi(x) . (w + A z))."""
    logvar_min: float = -8.0
    """Lower clamp on the posterior log-variance, for numerical stability."""


@register("vpl")
class VPL(RewardModel):
    """Variational preference learning reward model."""

    Config = VPLConfig
    uses_context = True

    def __init__(self, input_dim: int, config: VPLConfig) -> None:
        super().__init__(input_dim, config)
        c = config
        if c.latent_mode not in ("concat", "head"):
            raise ValueError(f"unknown latent_mode {c.latent_mode!r} (concat, head)")
        self.latent_dim = c.latent_dim
        self.pair_encoder = PairEncoder(input_dim, c.hidden, c.hidden, c.layers)
        self.set_encoder = SetEncoder(c.hidden, c.set_encoder, c.heads)
        self.to_posterior = nn.Linear(c.hidden, 2 * c.latent_dim)
        if c.latent_mode == "concat":
            self.reward_net = mlp(input_dim + c.latent_dim, c.hidden, 1, c.layers, out_bias=False)
        else:
            self.features = mlp(input_dim, c.hidden, c.hidden, c.layers - 1)
            self.head_base = nn.Parameter(torch.randn(c.hidden) / c.hidden**0.5)
            self.head_from_z = nn.Linear(c.latent_dim, c.hidden, bias=False)

    def encode(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
               ctx_mask: torch.Tensor) -> Posterior:
        """q(z | context) from padded context pairs (B, K, D) and mask (B, K)."""
        h = self.pair_encoder(ctx_chosen, ctx_rejected)  # (B, K, H)
        pooled = self.set_encoder(h, ctx_mask)  # (B, H)
        mean, logvar = self.to_posterior(pooled).chunk(2, dim=-1)  # (B, Z) each
        return Posterior(mean, logvar.clamp(self.config.logvar_min, 4.0))

    def posterior(self, batch: ContextBatch) -> Posterior:
        return self.encode(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask)

    def reward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Reward of items x (B, T, D) for users with latents z (B, Z) -> (B, T)."""
        zt = z.unsqueeze(1).expand(-1, x.shape[1], -1)  # (B, T, Z)
        if self.config.latent_mode == "concat":
            return self.reward_net(torch.cat([x, zt], dim=-1)).squeeze(-1)
        w = self.head_base + self.head_from_z(zt)  # (B, T, H)
        return (self.features(x) * w).sum(-1)

    def _latent(self, post: Posterior, sample: bool) -> torch.Tensor:
        if not sample:
            return post.mean
        return post.mean + torch.randn_like(post.mean) * (0.5 * post.logvar).exp()

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        z = self._latent(self.posterior(batch), sample)
        return self.reward(batch.chosen, z) - self.reward(batch.rejected, z)

    def loss(self, batch: ContextBatch, *, kl_weight: float = 1.0) -> LossOutput:
        post = self.posterior(batch)
        z = self._latent(post, sample=True)
        logits = self.reward(batch.chosen, z) - self.reward(batch.rejected, z)
        nll = bradley_terry_nll(logits, batch.target_mask)
        kl = kl_with_free_bits(post.mean, post.logvar, self.config.free_bits)
        loss = nll + self.config.beta * kl_weight * kl
        return LossOutput(loss, logits, {"nll": nll.item(), "kl": kl.item()})
