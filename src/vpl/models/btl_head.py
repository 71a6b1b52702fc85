"""BTL-head: shared BTL features with a per-user linear head fitted to the user's context.

Reward r_u(x) = w_u . phi(x) on features phi (an MLP) with a shared head w0. Training runs the
per-user fit below inside the loss and backpropagates through it (`meta_train`, default; off,
it is plain BTL training of phi and w0). Scoring fits
    w_u = argmin_w  sum_{k in context} -log sigmoid(w . x_k) + l2 ||w - w0||^2,
    x_k = phi(c_k) - phi(r_k),
for every batch row at once. By the representer theorem w_u = w0 + X^T beta with X the (K, H)
context differences, so Newton's method runs on beta in R^K: with G = X X^T, margins
t = X w0 + G beta and S = diag(sigmoid(t) sigmoid(-t)), one step is
    beta <- beta - (S G + 2 l2 I)^{-1} (2 l2 beta - sigmoid(-t)),
a batched K x K solve instead of an H x H one. Padded context rows are zero in X and keep
beta_k = 0; with no context w_u = w0 and the model is exactly BTL. As a latent model z = w_u,
with the Laplace posterior (diagonal of the inverse Hessian, by Woodbury in K x K).
References (meta-training through a differentiable convex head fit):
  Bertinetto et al. (2019), "Meta-learning with differentiable closed-form solvers", ICLR.
  Lee et al. (2019), "Meta-Learning with Differentiable Convex Optimization", CVPR.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vpl.data.pairs import ContextBatch
from vpl.losses import bradley_terry_nll
from vpl.models.base import LossOutput, Posterior, register
from vpl.models.latent import LatentRewardModel
from vpl.models.layers import mlp
from vpl.models.solvers import dual_posterior_variance, newton_map_dual


@dataclass(frozen=True)
class BTLHeadConfig:
    """BTL features phi(x), a shared head w0, and the per-user head fit.

    The measurements behind the defaults are in docs/models.md, "Evidence behind the defaults".
    """

    hidden: int = 256
    """Width of the hidden layers and of the features phi(x)."""
    layers: int = 2
    """Hidden layers of phi; phi(x) is the last hidden activation, so w0 . phi(x) is exactly
    the `btl` reward MLP with the same width and depth."""
    l2: float = 1.0
    """lambda: pull of the per-user head toward the shared head w0."""
    steps: int = 5
    """Newton steps of the per-user fit (it is strongly convex; a few suffice)."""
    meta_train: bool = True
    """Fit the head to each group's context inside the training loss too and backpropagate
    through the Newton steps (meta-learning), so phi learns features in which a few comparisons
    identify a user. False trains plain BTL features, which keep little beyond the average
    preference, so a user's head has little to work with. Groups trained with an empty
    context still train w0 exactly as BTL."""


@register("btl-head")
class BTLHead(LatentRewardModel):
    """r_u(x) = w_u . phi(x), w_u fitted on the user's context pairs at scoring time."""

    Config = BTLHeadConfig
    uses_context = True

    def __init__(self, input_dim: int, config: BTLHeadConfig) -> None:
        super().__init__(input_dim, config)
        c = config
        if c.layers < 1:
            raise ValueError(f"btl-head: layers must be >= 1, got {c.layers}")
        # `layers` hidden layers: mlp's `layers - 1` plus its final linear, then the activation
        self.features = nn.Sequential(mlp(input_dim, c.hidden, c.hidden, c.layers - 1), nn.GELU())
        self.head = nn.Parameter(torch.randn(c.hidden) / c.hidden**0.5)
        self.latent_dim = c.hidden

    def _diff(self, chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
        return self.features(chosen) - self.features(rejected)  # (B, N, H)

    def _personal_logits(self, batch: ContextBatch) -> torch.Tensor:
        tgt = self._diff(batch.chosen, batch.rejected)  # (B, T, H)
        shared = tgt @ self.head  # (B, T)
        if batch.ctx_mask.shape[1] == 0:
            return shared
        ctx = self._diff(batch.ctx_chosen, batch.ctx_rejected)  # (B, K, H)
        beta = newton_map_dual(ctx, self.head, batch.ctx_mask, l2=self.config.l2,
                                     steps=self.config.steps)  # (B, K)
        ctx = ctx * batch.ctx_mask.unsqueeze(-1).to(ctx.dtype)
        # w_u . x_t = w0 . x_t + sum_k beta_k x_k . x_t
        return shared + ((tgt @ ctx.transpose(1, 2)) * beta.unsqueeze(1)).sum(-1)

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        return self._personal_logits(batch)

    def infer(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
              ctx_mask: torch.Tensor) -> Posterior:
        """w_u = w0 + X^T beta (B, H) fitted to each row's context, with the Laplace variance."""
        c = self.config
        x = self._diff(ctx_chosen, ctx_rejected)  # (B, K, H)
        beta = newton_map_dual(x, self.head, ctx_mask, l2=c.l2, steps=c.steps)  # (B, K)
        xm = x * ctx_mask.unsqueeze(-1).to(x.dtype)
        w = self.head + (beta.unsqueeze(-1) * xm).sum(1)  # (B, H)
        var = dual_posterior_variance(x, self.head, beta, ctx_mask, l2=c.l2)
        return Posterior(w, var.clamp_min(1e-12).log())

    @property
    def item_part_weight(self) -> torch.Tensor:
        return self.features[0][0].weight

    def item_part(self, items: torch.Tensor) -> torch.Tensor:
        """phi(x) of items (U, D) -> (U, H)."""
        return self.features(items)

    def reward_table(self, item_part: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z @ item_part.T  # (S, U)

    def reward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """w_u . phi(x) for items x (B, T, D) and heads z (B, H) -> (B, T)."""
        return (self.features(x) * z.unsqueeze(1)).sum(-1)

    def loss(self, batch: ContextBatch, *, kl_weight: float = 1.0) -> LossOutput:
        if self.config.meta_train:
            logits = self._personal_logits(batch)
        else:
            tgt = self._diff(batch.chosen, batch.rejected)  # (B, T, H)
            logits = tgt @ self.head  # (B, T): plain BTL with the shared head
        nll = bradley_terry_nll(logits, batch.target_mask)
        return LossOutput(nll, logits, {"nll": nll.item()})
