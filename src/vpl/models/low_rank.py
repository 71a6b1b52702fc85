"""Low-rank: every user's reward is a weighted sum of a few shared basis rewards (LoRe family).

A basis map V (linear on the item vectors by default) gives B basis rewards v(x) = V x; user u
scores r_u(x) = w_u . v(x) with a weight vector w_u in R^B, so the population's reward
functions span a B-dimensional space (Bose et al., 2025). Training alternates, like EM:

* before every epoch (`before_epoch`, no gradients) every training user's weights are refitted
  to *all* of their pairs with the basis fixed: the MAP of the Bradley-Terry likelihood under
  an isotropic prior, w_u = argmin sum_k -log sigmoid(w . g_k) + (user_l2 / 2) ||w||^2 with
  g_k = v(c_k) - v(r_k), by Newton's method (strictly convex, B x B solves);
* the loss trains the basis on the batch's pairs (targets and context alike) under those
  weights, plus `basis_l2` times the squared norm of the basis parameters.

A new user's weights are inferred from their context pairs in one of two ways (`inference`):

* `bank` (default): empirical Bayes over the training users, as VPL's latent bank. The
  training users' weights from the last E-step are stored with the model (up to `bank_size`
  of them), and a new user's posterior is that bank reweighted by the context likelihood,
  p_m proportional to prod_k sigmoid(w_m . g_k); the prediction uses its mean. The prior is
  the population itself, clusters and all.
* `map`: the MAP under the Gaussian N(mu, Sigma) fitted to the training users' weights,
  again by Newton, with the Laplace approximation (covariance = inverse Hessian at the MAP)
  as the posterior.

With no context both give the population mean. The posterior (the bank's weighted mean and
variance, or the Laplace one) is what latent diagnostics, plots and active query selection
see; with the bank, active selection uses the weighted bank latents as its particles.

How it differs from LoRe: LoRe keeps user weights on the simplex (softmax logits fitted by
gradient steps); here they are unconstrained, with the population as prior.
Reference: Bose et al. (2025), "LoRe: Personalizing LLMs via Low-Rank Reward Modeling", COLM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vpl.data.pairs import ContextBatch, PairData
from vpl.losses import bradley_terry_nll
from vpl.models.base import LossOutput, Posterior, RewardModel, register
from vpl.models.layers import mlp


def map_weights(g: torch.Tensor, owner: torch.Tensor, groups: int, prior_mean: torch.Tensor,
                prior_prec: torch.Tensor, *, steps: int, offset: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """MAP weights of `groups` users from their pairs' basis differences, by Newton's method.

    g: (P, B) basis-reward differences v(chosen) - v(rejected) of each pair; owner: (P,) the
    group (0..groups-1) each pair belongs to; prior N(prior_mean (B,), prior_prec^-1 (B, B));
    offset: (P,) a fixed part o_k of each pair's logit (default 0).
    Minimizes sum_{k of u} -log sigmoid(o_k + w_u . g_k) + (1/2)(w_u - m)^T P (w_u - m) for every
    group at once, from w = m. Pairs are accumulated with index_add, so groups of very
    different sizes cost no padding. Returns (weights (groups, B), Hessians (groups, B, B)) at
    the last iterate; differentiable in g.
    """
    b = g.shape[1]
    w = prior_mean.expand(groups, b).clone()
    outer = g.unsqueeze(-1) * g.unsqueeze(-2)  # (P, B, B)
    hess = prior_prec.expand(groups, b, b)
    for step in range(steps + 1):
        t = (w[owner] * g).sum(-1)  # (P,) margins
        if offset is not None:
            t = t + offset
        grad = torch.zeros_like(w).index_add(0, owner, -torch.sigmoid(-t).unsqueeze(-1) * g)
        grad = grad + (w - prior_mean) @ prior_prec
        curv = (torch.sigmoid(t) * torch.sigmoid(-t)).view(-1, 1, 1) * outer
        hess = prior_prec + torch.zeros(groups, b, b, dtype=g.dtype, device=g.device
                                        ).index_add(0, owner, curv)
        if step == steps:
            break
        w = w - torch.linalg.solve(hess, grad.unsqueeze(-1)).squeeze(-1)
    return w, hess


@dataclass(frozen=True)
class LowRankConfig:
    """Basis rewards, the per-user weight fits and their priors."""

    rank: int = 8
    """B: number of basis rewards (the size of a user's weight vector)."""
    layers: int = 0
    """Hidden layers of the basis map before its last linear layer; 0 is a linear basis on the
    item vectors, as in LoRe."""
    hidden: int = 256
    """Width of those hidden layers (unused with `layers` 0)."""
    user_l2: float = 1.0
    """Precision of the isotropic prior on training users' weights in the E-step."""
    basis_l2: float = 1e-5
    """Weight of the squared norm of the basis parameters in the loss."""
    steps: int = 8
    """Newton steps of every weight fit (strictly convex; a few suffice)."""
    prior_jitter: float = 1e-3
    """Added to the diagonal of the population covariance Sigma before it is inverted."""
    inference: str = "bank"
    """How a new user's weights are inferred from their context: `bank` (the training users'
    weights reweighted by the context likelihood) or `map` (MAP under the Gaussian fitted to
    the training users' weights; Laplace posterior). `vpl bench --suite full`, K=8, 3 seeds:
    see the README (the bank is ahead on Personas 4 types, where users come in clusters)."""
    bank_size: int = 2048
    """Most training users' weights kept in the bank (a seeded random subset beyond)."""


@register("low-rank")
class LowRank(RewardModel):
    """r_u(x) = w_u . V x with a shared low-rank basis V and per-user weights w_u."""

    Config = LowRankConfig
    uses_context = True

    def __init__(self, input_dim: int, config: LowRankConfig) -> None:
        super().__init__(input_dim, config)
        c = config
        if c.rank < 1:
            raise ValueError(f"low-rank: rank must be >= 1, got {c.rank}")
        if c.layers < 0:
            raise ValueError(f"low-rank: layers must be >= 0, got {c.layers}")
        if c.inference not in ("bank", "map"):
            raise ValueError(f"low-rank: unknown inference {c.inference!r} (bank, map)")
        self.latent_dim = c.rank
        self.basis = mlp(input_dim, c.hidden, c.rank, c.layers, out_bias=False)
        # the population prior of a new user's weights (set by every E-step)
        self.register_buffer("prior_mean", torch.zeros(c.rank))
        self.register_buffer("prior_cov", torch.eye(c.rank) / c.user_l2)
        # (M, B) the bank: training users' weights of the last E-step (saved with the model)
        self.register_buffer("latent_bank", torch.zeros(0, c.rank))
        # (U, B) training users' weights from the last E-step; empty until before_epoch
        self.register_buffer("train_weights", torch.empty(0, c.rank), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        key = prefix + "latent_bank"
        if key in state_dict:  # the bank's size is whatever was saved
            self.latent_bank = torch.zeros_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def uses_bank(self) -> bool:
        """True when a new user's weights come from the bank (bank inference, bank filled)."""
        return self.config.inference == "bank" and self.latent_bank.shape[0] > 0

    def _diff(self, chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
        return self.basis(chosen) - self.basis(rejected)  # (..., B)

    @property
    def prior_prec(self) -> torch.Tensor:
        """Precision of the population prior (Sigma + jitter I)^-1."""
        eye = torch.eye(self.config.rank, dtype=self.prior_cov.dtype,
                        device=self.prior_cov.device)
        return torch.linalg.inv(self.prior_cov + self.config.prior_jitter * eye)

    def fit_weights(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                    ctx_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MAP weights (B, rank) of every row's context pairs (B, K, D) x2 under the population
        prior, with the Hessians (B, rank, rank) of the objective there."""
        rows, k = ctx_mask.shape
        ctx = self._diff(ctx_chosen, ctx_rejected).reshape(rows * k, self.config.rank)
        keep = ctx_mask.reshape(-1)
        owner = torch.arange(rows, device=ctx.device).repeat_interleave(k)[keep]
        return map_weights(ctx[keep], owner, rows, self.prior_mean, self.prior_prec,
                           steps=self.config.steps)

    def bank_weights(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                     ctx_mask: torch.Tensor) -> torch.Tensor:
        """Posterior weights (B, M) of the bank's members given each row's context pairs
        (B, K, D) x2 and mask (B, K): softmax over m of sum_k log sigmoid(w_m . g_k)."""
        ll = torch.nn.functional.logsigmoid(self._diff(ctx_chosen, ctx_rejected)
                                            @ self.latent_bank.T)  # (B, K, M)
        return torch.softmax((ll * ctx_mask.unsqueeze(-1).to(ll.dtype)).sum(1), dim=-1)

    def encode(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
               ctx_mask: torch.Tensor) -> Posterior:
        """Posterior of the user weights given context pairs (B, K, D) x2 and mask (B, K): with
        the bank, its weighted mean and variance; otherwise the Laplace approximation (the MAP
        and the diagonal of the inverse Hessian)."""
        if self.uses_bank:
            p = self.bank_weights(ctx_chosen, ctx_rejected, ctx_mask)  # (B, M)
            mean = p @ self.latent_bank
            var = p @ self.latent_bank.pow(2) - mean.pow(2)
            return Posterior(mean, var.clamp_min(0.0).add(1e-12).log())
        w, hess = self.fit_weights(ctx_chosen, ctx_rejected, ctx_mask)
        var = torch.linalg.inv(hess).diagonal(dim1=-2, dim2=-1)
        return Posterior(w, var.clamp_min(1e-12).log())

    def posterior(self, batch: ContextBatch) -> Posterior:
        return self.encode(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask)

    def sample_posterior(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor, n: int,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws (n, rank) of one user's weights from the full-covariance Laplace posterior
        given answered pairs (K, D) x2, antithetic (w + L eps paired with w - L eps)."""
        mask = torch.ones(1, ctx_chosen.shape[0], dtype=torch.bool, device=ctx_chosen.device)
        w, hess = self.fit_weights(ctx_chosen.unsqueeze(0), ctx_rejected.unsqueeze(0), mask)
        chol = torch.linalg.cholesky(torch.linalg.inv(hess[0]))  # covariance = L L^T
        half = torch.randn((n + 1) // 2, self.config.rank, generator=generator,
                           dtype=w.dtype).to(w.device)
        eps = torch.cat([half, -half])[:n]
        return w[0] + eps @ chol.T

    def reward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Reward of items x (B, T, D) for users with weights z (B, rank) -> (B, T)."""
        return (self.basis(x) * z.unsqueeze(1)).sum(-1)

    @property
    def item_part_weight(self) -> torch.Tensor:
        """The parameter `item_part` depends on first (its version tells when a cache of item
        parts is stale)."""
        return self.basis[0].weight

    def item_part(self, items: torch.Tensor) -> torch.Tensor:
        """The basis rewards v(x) of items (U, D) -> (U, rank)."""
        return self.basis(items)

    def reward_table(self, item_part: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Reward of every item under every weight vector, (S, U), from `item_part` (U, rank)
        and z (S, rank)."""
        return z @ item_part.T

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        w = self.posterior(batch).mean  # (B, rank)
        return self.reward(batch.chosen, w) - self.reward(batch.rejected, w)  # (B, T)

    def bind(self, data: PairData) -> None:
        # the weights table belongs to one training set; a new binding invalidates it
        self.train_weights = self.prior_mean.new_empty(0, self.config.rank)

    @torch.no_grad()
    def user_weights(self, data: PairData, batch_size: int = 8192) -> torch.Tensor:
        """MAP weights (U, rank) of every user of `data` from all of that user's pairs, under
        the isotropic training prior (users without pairs get zeros)."""
        dev = self.prior_mean.device
        items = torch.from_numpy(data.items).to(dev)
        was = self.training
        self.eval()
        try:
            g = torch.cat([self._diff(items[torch.from_numpy(data.chosen[s:s + batch_size])],
                                      items[torch.from_numpy(data.rejected[s:s + batch_size])])
                           for s in range(0, len(data), batch_size)]) if len(data) else \
                items.new_zeros(0, self.config.rank)
        finally:
            self.train(was)
        rank = self.config.rank
        prec = self.config.user_l2 * torch.eye(rank, dtype=g.dtype, device=dev)
        w, _ = map_weights(g, torch.from_numpy(data.user).to(dev), len(data.users),
                           torch.zeros(rank, dtype=g.dtype, device=dev), prec,
                           steps=self.config.steps)
        return w

    def before_epoch(self, train: PairData, rng: np.random.Generator) -> None:
        """E-step: every training user's weights, then the population prior and the bank from
        them (so validation during training scores the inference used afterwards)."""
        w = self.user_weights(train)
        seen = torch.zeros(len(train.users), dtype=torch.bool, device=w.device)
        seen[torch.from_numpy(np.unique(train.user)).to(w.device)] = True
        ws = w[seen]
        self.prior_mean.copy_(ws.mean(0))
        if len(ws) > 1:
            self.prior_cov.copy_(torch.cov(ws.T).reshape(self.config.rank, self.config.rank))
        self.train_weights = w
        size = self.config.bank_size
        if len(ws) > size:  # seeded, so the bank does not depend on the epoch's rng state
            keep = np.sort(np.random.default_rng(0).choice(len(ws), size=size, replace=False))
            ws = ws[torch.from_numpy(keep).to(ws.device)]
        self.latent_bank = ws.clone()

    def after_fit(self, train: PairData, context_size: int, seed: int,
                  validate: Callable[[], float] | None = None) -> dict[str, float]:
        """The restored best basis was trained under its own epoch's E-step; rerunning the E-step
        makes the saved prior and bank match the saved basis exactly."""
        self.before_epoch(train, np.random.default_rng(seed))
        return {}

    def loss(self, batch: ContextBatch, *, kl_weight: float = 1.0) -> LossOutput:
        """Basis step: BT NLL of the batch's pairs (targets and context) under the users' E-step
        weights, plus the basis penalty. Without an E-step (users not of the bound training
        data) the weights come from the context fit, detached."""
        if len(self.train_weights) and int(batch.user.max()) < len(self.train_weights):
            w = self.train_weights[batch.user]  # (B, rank)
        else:
            w = self.posterior(batch).mean.detach()
        tgt = (self._diff(batch.chosen, batch.rejected) * w.unsqueeze(1)).sum(-1)  # (B, T)
        ctx = (self._diff(batch.ctx_chosen, batch.ctx_rejected) * w.unsqueeze(1)).sum(-1)
        logits = torch.cat([tgt, ctx], dim=1)
        mask = torch.cat([batch.target_mask, batch.ctx_mask], dim=1)
        nll = bradley_terry_nll(logits, mask)
        penalty = sum(p.pow(2).sum() for p in self.basis.parameters())
        loss = nll + self.config.basis_l2 * penalty
        return LossOutput(loss, tgt, {"nll": nll.item(),
                                      "weight_norm": w.detach().norm(dim=-1).mean().item()})
