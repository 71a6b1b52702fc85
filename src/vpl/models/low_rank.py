"""Low-rank: every user's reward is a weighted sum of a few shared basis rewards (LoRe family).

A basis map V (linear on the item vectors by default) gives B basis rewards v(x) = V x; user u
scores r_u(x) = w_u . v(x) with a weight vector w_u in R^B, so the population's reward
functions span a B-dimensional space (Bose et al., 2025). Training alternates, like EM:

* before every epoch (the training loop's E-step, `vpl.train.callbacks.low_rank_e_step`,
  no gradients) every training user's weights are refitted
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

from dataclasses import dataclass

import torch

from vpl.data.pairs import ContextBatch, PairData
from vpl.losses import bradley_terry_nll
from vpl.models.bank import LatentBank
from vpl.models.base import LossOutput, Posterior, register
from vpl.models.latent import LatentRewardModel
from vpl.models.layers import mlp
from vpl.models.solvers import newton_map


@dataclass(frozen=True)
class LowRankConfig:
    """Basis rewards, the per-user weight fits and their priors.

    The measurements behind the defaults are in docs/models.md, "Evidence behind the defaults".
    """

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
    the training users' weights; Laplace posterior). `bank` is the default: its prior is the
    population itself, so it represents users who come in clusters, which one Gaussian
    cannot."""
    bank_temperature: float | None = 1.0
    """Power tau of the context likelihood in the bank posterior (`vpl.models.bank`): None
    chooses it on held-out training users after training (`vpl.train.temper`)."""
    bank_size: int = 2048
    """Most training users' weights kept in the bank (a seeded random subset beyond)."""


@register("low-rank")
class LowRank(LatentRewardModel):
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
        # the bank: training users' weights of the last E-step (saved with the model)
        self.bank = LatentBank(c.rank, c.bank_size)
        # (U, B) training users' weights from the last E-step; empty until before_epoch
        self.register_buffer("train_weights", torch.empty(0, c.rank), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        old = prefix + "latent_bank"
        if old in state_dict:  # checkpoints that kept the bank as a buffer of the model
            state_dict[prefix + "bank.latents"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def uses_bank(self) -> bool:
        """True when a new user's weights come from the bank (bank inference, bank filled)."""
        return self.config.inference == "bank" and len(self.bank) > 0

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
        return newton_map(ctx[keep], owner, rows, self.prior_mean, self.prior_prec,
                           steps=self.config.steps)

    def bank_weights(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                     ctx_mask: torch.Tensor) -> torch.Tensor:
        """Posterior weights (B, M) of the bank's members given each row's context pairs
        (B, K, D) x2 and mask (B, K): softmax over m of sum_k log sigmoid(w_m . g_k)."""
        return self.bank.weights(self.bank_log_likelihood(ctx_chosen, ctx_rejected, ctx_mask),
                                 ctx_mask.sum(1))

    def bank_log_likelihood(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                            ctx_mask: torch.Tensor) -> torch.Tensor:
        """log p(context | w_m) (B, M) of every bank member: sum_k log sigmoid(w_m . g_k)."""
        ll = torch.nn.functional.logsigmoid(self._diff(ctx_chosen, ctx_rejected)
                                            @ self.bank.latents.T)  # (B, K, M)
        return (ll * ctx_mask.unsqueeze(-1).to(ll.dtype)).sum(1)

    def infer(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
               ctx_mask: torch.Tensor) -> Posterior:
        """Posterior of the user weights given context pairs (B, K, D) x2 and mask (B, K): with
        the bank, its weighted mean and variance; otherwise the Laplace approximation (the MAP
        and the diagonal of the inverse Hessian)."""
        if self.uses_bank:
            return self.bank.posterior(self.bank_log_likelihood(ctx_chosen, ctx_rejected,
                                                                ctx_mask), ctx_mask.sum(1))
        w, hess = self.fit_weights(ctx_chosen, ctx_rejected, ctx_mask)
        var = torch.linalg.inv(hess).diagonal(dim1=-2, dim2=-1)
        return Posterior(w, var.clamp_min(1e-12).log())

    def particles(self, ctx_a: torch.Tensor, ctx_b: torch.Tensor, samples: int,
                  generator: torch.Generator | None = None, *, max_particles: int = 256
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """With the bank, the bank with its posterior weights; otherwise `samples` draws from
        the full-covariance Laplace posterior, antithetic (w + L eps paired with w - L eps)."""
        mask = torch.ones(1, ctx_a.shape[0], dtype=torch.bool, device=ctx_a.device)
        if self.uses_bank:
            ll = self.bank_log_likelihood(ctx_a.unsqueeze(0), ctx_b.unsqueeze(0), mask)[0]
            return self.bank.particles(ll, ctx_a.shape[0], max_particles, generator)
        w, hess = self.fit_weights(ctx_a.unsqueeze(0), ctx_b.unsqueeze(0), mask)
        chol = torch.linalg.cholesky(torch.linalg.inv(hess[0]))  # covariance = L L^T
        half = torch.randn((samples + 1) // 2, self.config.rank, generator=generator,
                           dtype=w.dtype).to(w.device)
        eps = torch.cat([half, -half])[:samples]
        z = w[0] + eps @ chol.T
        return z, torch.full((z.shape[0],), 1.0 / z.shape[0])

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
        w, _ = newton_map(g, torch.from_numpy(data.user).to(dev), len(data.users),
                           torch.zeros(rank, dtype=g.dtype, device=dev), prec,
                           steps=self.config.steps)
        return w

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
