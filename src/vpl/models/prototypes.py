"""Prototypes: a PAL-style ideal-point model, users as mixtures of M shared prototypes.

A shared map phi(x) (MLP) puts items in a feature space that also holds M learned prototype
points p_m. User u is a mixture a_u = softmax(alpha_u) over prototypes with ideal point
e_u = sum_m a_um p_m, and prefers items close to it (the distance variant, PAL-A):
    r(x, u) = -||phi(x) - e_u||^2,
    logit = r(c, u) - r(r, u) = ||phi_r||^2 - ||phi_c||^2 + 2 e_u . (phi_c - phi_r).
The logit is linear in a_u: logit = s + a_u . g with s = ||phi_r||^2 - ||phi_c||^2 and
g_m = 2 p_m . (phi_c - phi_r), which makes the per-user fit cheap.

alpha_u is never stored: for every batch row it is fitted from the row's context pairs by
`steps` gradient steps (from alpha = 0, i.e. uniform a) on
    sum_{k in context} -log sigmoid(s_k + a . g_k) + (l2 / 2) ||alpha||^2,
with the gradient written out in closed form, vectorized over the batch (no autograd inside,
no loop over users), so shared weights are never touched. With an empty context a_u stays
uniform. Training runs the same inner fit and backpropagates *through* the unrolled steps
(exact meta-gradient, cheap because each step is O(B K M)), so training and scoring agree and
the prototypes learn to be identifiable from a few comparisons.
As a latent model z = a_u; the inner fit is a point estimate, so the posterior has no spread
(active selection gains nothing from it).
Reference: Chen et al. (2025), "PAL: Sample-Efficient Personalized Reward Modeling for
Pluralistic Alignment", ICLR.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vpl.data.pairs import ContextBatch
from vpl.models.base import Posterior, register
from vpl.models.latent import LatentRewardModel
from vpl.models.layers import mlp


def fit_mixture_logits(s: torch.Tensor, g: torch.Tensor, mask: torch.Tensor, *, steps: int,
                       lr: float, l2: float) -> torch.Tensor:
    """Mixture logits alpha (B, M) minimizing sum_k -logsigmoid(s_k + softmax(alpha) . g_k)
    + (l2 / 2) ||alpha||^2 by `steps` gradient steps from alpha = 0.

    s: (B, K) offsets, g: (B, K, M) per-prototype slopes, mask: (B, K) True for real pairs.
    The gradient is d/d alpha = J^T (-sum_k sigmoid(-logit_k) g_k) + l2 alpha with the softmax
    Jacobian J = diag(a) - a a^T; differentiable in s and g for unrolled training.
    """
    b, _, m = g.shape
    alpha = g.new_zeros(b, m)
    w = mask.to(g.dtype)  # (B, K)
    for _ in range(steps):
        a = torch.softmax(alpha, -1)  # (B, M)
        logit = s + (g * a.unsqueeze(1)).sum(-1)  # (B, K)
        coef = -torch.sigmoid(-logit) * w  # (B, K) d loss / d logit
        grad_a = (coef.unsqueeze(-1) * g).sum(1)  # (B, M)
        grad_alpha = a * (grad_a - (a * grad_a).sum(-1, keepdim=True)) + l2 * alpha
        alpha = alpha - lr * grad_alpha
    return alpha


POINT_LOGVAR = -27.6  # log(1e-12): a point estimate has no posterior spread


@dataclass(frozen=True)
class PrototypesConfig:
    """Shared item features, M prototypes, and the per-user inner fit.

    The measurements behind the defaults are in docs/models.md, "Evidence behind the defaults".
    """

    prototypes: int = 4
    """M: number of prototype ideal points."""
    feature_dim: int = 32
    """Size of the feature space phi(x) holding items and prototypes."""
    hidden: int = 256
    """Width of the hidden layers of phi."""
    layers: int = 2
    """Hidden layers of phi."""
    steps: int = 30
    """Gradient steps fitting a user's mixture logits to its context."""
    inner_lr: float = 0.5
    """Step size of those inner steps."""
    l2: float = 0.01
    """L2 pull of the mixture logits toward 0 (the uniform mixture); weak, because the few
    steps from alpha = 0 already regularize."""


@register("prototypes")
class Prototypes(LatentRewardModel):
    """Ideal-point reward -||phi(x) - sum_m a_um p_m||^2 with a_u fitted to the context."""

    Config = PrototypesConfig
    uses_context = True

    def __init__(self, input_dim: int, config: PrototypesConfig) -> None:
        super().__init__(input_dim, config)
        c = config
        self.features = mlp(input_dim, c.hidden, c.feature_dim, c.layers)
        self.protos = nn.Parameter(torch.randn(c.prototypes, c.feature_dim))
        self.latent_dim = c.prototypes

    def _slopes(self, chosen: torch.Tensor, rejected: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        # (B, N, D) x2 -> s (B, N), g (B, N, M) with logit = s + a . g
        f_c, f_r = self.features(chosen), self.features(rejected)  # (B, N, F)
        s = f_r.pow(2).sum(-1) - f_c.pow(2).sum(-1)
        g = 2.0 * (f_c - f_r) @ self.protos.T
        return s, g

    def mixture(self, batch: ContextBatch) -> torch.Tensor:
        """Each row's prototype weights a (B, M) fitted to its context."""
        return self._mixture(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask)

    def _mixture(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                 ctx_mask: torch.Tensor) -> torch.Tensor:
        c = self.config
        s, g = self._slopes(ctx_chosen, ctx_rejected)
        # closed-form gradients: no autograd needed, so this also works under no_grad, and
        # when training the graph through the unrolled steps is kept for the meta-gradient
        alpha = fit_mixture_logits(s, g, ctx_mask, steps=c.steps, lr=c.inner_lr, l2=c.l2)
        return torch.softmax(alpha, -1)

    def infer(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
              ctx_mask: torch.Tensor) -> Posterior:
        """The fitted mixture a (B, M) as a point posterior."""
        a = self._mixture(ctx_chosen, ctx_rejected, ctx_mask)
        return Posterior(a, torch.full_like(a, POINT_LOGVAR))

    @property
    def item_part_weight(self) -> torch.Tensor:
        return self.features[0].weight

    def item_part(self, items: torch.Tensor) -> torch.Tensor:
        """phi(x) and ||phi(x)||^2 of items (U, D) -> (U, F + 1)."""
        f = self.features(items)
        return torch.cat([f, f.pow(2).sum(-1, keepdim=True)], dim=-1)

    def reward_table(self, item_part: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """-||phi(x) - e||^2 = 2 e . phi(x) - ||phi(x)||^2 - ||e||^2 for every item and every
        mixture z (S, M) -> (S, U)."""
        ideal = z @ self.protos  # (S, F)
        return (2.0 * ideal @ item_part[:, :-1].T - item_part[:, -1].unsqueeze(0)
                - ideal.pow(2).sum(-1, keepdim=True))

    def reward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """r(x, u) = -||phi(x) - a @ P||^2 for items x (B, T, D), mixtures a (B, M) -> (B, T)."""
        ideal = a @ self.protos  # (B, F)
        return -(self.features(x) - ideal.unsqueeze(1)).pow(2).sum(-1)

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        a = self.mixture(batch)  # (B, M)
        s, g = self._slopes(batch.chosen, batch.rejected)  # (B, T), (B, T, M)
        return s + (g * a.unsqueeze(1)).sum(-1)  # (B, T)
