"""Mixture of M reward heads with per-user responsibilities fitted by EM (MaxMin-RLHF style).

Users are assumed to belong to one of M latent groups, group m having reward r_m(x). EM:

* E-step (the training loop's `vpl.train.callbacks.mixture_e_step`, once per epoch, no
  gradients): for every training user u,
  gamma_um ∝ pi_m * prod_{(c, r) of u} sigmoid(r_m(c) - r_m(r)) over *all* of u's pairs, and the
  mixing weights are re-estimated as pi_m = (sum_u gamma_um + a) / (U + M a) (a = smoothing).
* M-step (`loss`, by gradient): the gamma-weighted Bradley-Terry NLL
  sum_m gamma_um * -log sigmoid(r_m(c) - r_m(r)), averaged over the batch's targets.

Scoring a user (seen or new) uses only the batch's context pairs: the posterior over heads
g_m ∝ pi_m * prod_{k in context} sigmoid(r_m(c_k) - r_m(r_k)) (pi alone for an empty context),
and the prediction is the g-weighted *mixture probability* P = sum_m g_m sigmoid(logit_m),
returned as log-odds log P - log(1 - P) (not the MAP head: the mixture is calibrated when the
context cannot tell the groups apart).

As a latent model z is a head indicator: r(x, z) = sum_m z_m r_m(x), the posterior's
particles are the M one-hot latents weighted by g, and its Gaussian summary has mean g.

State that survives save/load: the heads and `log_pi` (a persistent (M,) buffer). The training
users' responsibilities are a non-persistent buffer rebuilt by every E-step from the bound
training data, so nothing depends on a maximum number of users.
Reference: Chakraborty et al. (2024), "MaxMin-RLHF: Alignment with Diverse Human Preferences",
ICML (EM over reward-model mixtures).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vpl.data.pairs import ContextBatch, PairData
from vpl.losses import masked_mean
from vpl.models.base import LossOutput, Posterior, register
from vpl.models.latent import LatentRewardModel
from vpl.models.layers import mlp

TINY = 1e-30
"""Below this, a mixture probability summed in float32 has lost digits to underflow."""


def mixture_log_odds(log_weights: torch.Tensor, head_logits: torch.Tensor) -> torch.Tensor:
    """Log-odds of the mixture probability sum_m w_m sigmoid(l_m).

    log_weights: (..., M) normalized log mixture weights; head_logits: (..., T, M) per-head
    log-odds. P and 1 - P are each a weighted sum (sigmoid(l_m) and sigmoid(-l_m)), so no
    probability is ever subtracted from one. Without gradients the sums are two matrix
    products, and only where one underflows (below `TINY`) are they taken in log space,
    logsumexp_m(log w_m + logsigmoid(+-l_m)), which is exact everywhere but several times
    slower; with gradients always in log space. Returns (..., T).
    """
    if torch.is_grad_enabled() and (log_weights.requires_grad or head_logits.requires_grad):
        return _log_space_log_odds(log_weights, head_logits)
    w = log_weights.exp().to(head_logits.dtype).unsqueeze(-1)  # (..., M, 1)
    p = (torch.sigmoid(head_logits) @ w).squeeze(-1)
    q = (torch.sigmoid(-head_logits) @ w).squeeze(-1)
    out = p.log() - q.log()
    tiny = (p < TINY) | (q < TINY)
    if bool(tiny.any()):
        out = torch.where(tiny, _log_space_log_odds(log_weights, head_logits), out)
    return out


def _log_space_log_odds(log_weights: torch.Tensor, head_logits: torch.Tensor) -> torch.Tensor:
    lw = log_weights.unsqueeze(-2)  # (..., 1, M)
    return (torch.logsumexp(lw + F.logsigmoid(head_logits), -1)
            - torch.logsumexp(lw + F.logsigmoid(-head_logits), -1))


def head_posterior(log_prior: torch.Tensor, head_logits: torch.Tensor, mask: torch.Tensor
                   ) -> torch.Tensor:
    """Log posterior over heads (B, M) given comparisons: log pi_m + sum_k log sigmoid(l_km).

    log_prior: (M,); head_logits: (B, K, M); mask: (B, K), False entries contribute nothing.
    """
    ll = torch.where(mask.unsqueeze(-1), F.logsigmoid(head_logits), 0.0).sum(1)  # (B, M)
    return torch.log_softmax(log_prior + ll, dim=-1)


@dataclass(frozen=True)
class MixtureConfig:
    """M reward heads and the EM settings of their mixing weights."""

    heads: int = 4
    """M: number of reward heads (latent user groups). Extra heads are harmless: EM shares a
    group between them or lets their weight shrink."""
    hidden: int = 256
    """Width of the hidden layers."""
    layers: int = 2
    """Number of hidden layers."""
    shared_trunk: bool = True
    """True: one MLP whose last linear layer has M outputs (the heads share the hidden layers).
    False: M independent MLPs."""
    pi_smoothing: float = 1.0
    """Dirichlet pseudo-count a in the pi update (sum_u gamma_um + a) / (U + M a); keeps every
    head's weight above zero."""


@register("mixture")
class Mixture(LatentRewardModel):
    """Mixture of Bradley-Terry reward heads; groups by EM, new users by context posterior."""

    Config = MixtureConfig
    uses_context = True

    def __init__(self, input_dim: int, config: MixtureConfig) -> None:
        super().__init__(input_dim, config)
        c = config
        if c.heads < 1:
            raise ValueError(f"mixture: heads must be >= 1, got {c.heads}")
        if c.shared_trunk:
            self.reward_net = mlp(input_dim, c.hidden, c.heads, c.layers, out_bias=False)
        else:
            self.reward_nets = nn.ModuleList(
                mlp(input_dim, c.hidden, 1, c.layers, out_bias=False) for _ in range(c.heads))
        self.latent_dim = c.heads
        self.register_buffer("log_pi", torch.full((c.heads,), -float(np.log(c.heads))))
        # (U, M) E-step responsibilities of the bound training users; empty until an E-step
        self.register_buffer("train_log_resp", torch.empty(0, c.heads), persistent=False)

    def rewards(self, x: torch.Tensor) -> torch.Tensor:
        """Rewards of items x (..., D) under every head -> (..., M)."""
        if self.config.shared_trunk:
            return self.reward_net(x)
        return torch.cat([net(x) for net in self.reward_nets], dim=-1)

    def head_logits(self, chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
        """Per-head log-odds (..., M) that chosen (..., D) beats rejected (..., D)."""
        return self.rewards(chosen) - self.rewards(rejected)

    def context_log_resp(self, batch: ContextBatch) -> torch.Tensor:
        """Log posterior over heads (B, M) from the batch's context (log pi when empty)."""
        return self._log_resp(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask)

    def _log_resp(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                  ctx_mask: torch.Tensor) -> torch.Tensor:
        ctx = self.head_logits(ctx_chosen, ctx_rejected)  # (B, K, M)
        return head_posterior(self.log_pi, ctx, ctx_mask)

    @property
    def item_part_weight(self) -> torch.Tensor:
        net = self.reward_net if self.config.shared_trunk else self.reward_nets[0]
        return net[0].weight

    def item_part(self, items: torch.Tensor) -> torch.Tensor:
        """Every head's reward of items (U, D) -> (U, M)."""
        return self.rewards(items)

    def reward_table(self, item_part: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z @ item_part.T  # (S, U)

    def reward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """sum_m z_m r_m(x) for items x (B, T, D) and head weights z (B, M) -> (B, T)."""
        return (self.rewards(x) * z.unsqueeze(1)).sum(-1)

    def infer(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
              ctx_mask: torch.Tensor) -> Posterior:
        """The head posterior g (B, M) as the mean of the one-hot latent, variance g (1 - g)."""
        g = self._log_resp(ctx_chosen, ctx_rejected, ctx_mask).exp()
        return Posterior(g, (g * (1 - g)).clamp_min(1e-12).log())

    def particles(self, ctx_a: torch.Tensor, ctx_b: torch.Tensor, samples: int,
                  generator: torch.Generator | None = None, *, max_particles: int = 256
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The M one-hot latents with the head posterior as weights (exact)."""
        mask = torch.ones(1, ctx_a.shape[0], dtype=torch.bool, device=ctx_a.device)
        g = self._log_resp(ctx_a.unsqueeze(0), ctx_b.unsqueeze(0), mask)[0].exp()
        return torch.eye(self.config.heads, dtype=g.dtype, device=g.device), g

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        log_resp = self.context_log_resp(batch)  # (B, M)
        tgt = self.head_logits(batch.chosen, batch.rejected)  # (B, T, M)
        return mixture_log_odds(log_resp, tgt)  # (B, T)

    def bind(self, data: PairData) -> None:
        # responsibilities belong to one training set; a new binding invalidates them
        self.train_log_resp = self.log_pi.new_empty(0, self.config.heads)

    @torch.no_grad()
    def e_step(self, data: PairData, batch_size: int = 8192) -> torch.Tensor:
        """Log responsibilities (U, M) of every user of `data` from all of its pairs."""
        dev = self.log_pi.device
        items = torch.from_numpy(data.items).to(dev)
        ll = torch.zeros(len(data.users), self.config.heads, device=dev)  # (U, M)
        was = self.training
        self.eval()
        try:
            for s in range(0, len(data), batch_size):
                sl = slice(s, s + batch_size)
                ch = torch.from_numpy(data.chosen[sl]).to(dev)
                rj = torch.from_numpy(data.rejected[sl]).to(dev)
                users = torch.from_numpy(data.user[sl]).to(dev)
                lp = F.logsigmoid(self.head_logits(items[ch], items[rj]))  # (P, M)
                ll.index_add_(0, users, lp)
        finally:
            self.train(was)
        return torch.log_softmax(self.log_pi + ll, dim=-1)

    def loss(self, batch: ContextBatch, *, kl_weight: float = 1.0) -> LossOutput:
        """M-step: gamma-weighted BT NLL. gamma comes from the last E-step when the batch's users
        are the bound training users; otherwise (no E-step yet) from the context posterior,
        detached, so the loss is still an EM-style weighted likelihood."""
        tgt = self.head_logits(batch.chosen, batch.rejected)  # (B, T, M)
        if len(self.train_log_resp) and int(batch.user.max()) < len(self.train_log_resp):
            log_resp = self.train_log_resp[batch.user]  # (B, M)
        else:
            log_resp = self.context_log_resp(batch).detach()
        nll_m = -F.logsigmoid(tgt)  # (B, T, M)
        weighted = (nll_m * log_resp.exp().unsqueeze(1)).sum(-1)  # (B, T)
        nll = masked_mean(weighted, batch.target_mask)
        with torch.no_grad():
            logits = mixture_log_odds(log_resp, tgt)
            ent = -(log_resp.exp() * log_resp).sum(-1).mean()
        return LossOutput(nll, logits, {"nll": nll.item(), "resp_entropy": ent.item()})
