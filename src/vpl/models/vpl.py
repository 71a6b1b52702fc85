"""VPL: a variational posterior over a user latent z inferred from the user's comparisons.

q(z | context) = N(mu, diag(sigma^2)) from a pair encoder and a permutation-invariant set
encoder; the reward r(x, z) is conditioned on z. Trained on the ELBO
    E_q[ sum_t log sigmoid(r(c_t, z) - r(r_t, z)) ] - beta * KL(q || N(0, I)),
with the KL weight annealed by the training loop. At evaluation z is the posterior mean.

Inference (`inference`): `amortized` takes q(z | context) from the encoder, as the paper does.
`bank` is empirical Bayes over a *latent bank*: after training, the encoder's posterior means of
the training users (up to `bank_size` of them) are stored with the weights, and a new user's
posterior is the bank reweighted by the likelihood of their context under the reward decoder,
    w_m  proportional to  prod_k sigmoid(r(c_k, z_m) - r(r_k, z_m)),
summarized as mean sum_m w_m z_m and the weighted variance. Nothing is trained per user; the
decoder itself scores the context (the encoder's amortization error drops out, at the price of
a posterior confined to the bank's latents), and the posterior may be multimodal
(`bank_weights` exposes it), which is what choosing informative queries needs.
With bank inference, training ends with a few EM steps (`refine`): every training user's
latent is fitted to all of their pairs (their MAP latent under the prior, or their bank
posterior mean), the decoder is retrained under those latents, and they replace the bank.

Reference: Poddar et al. (2024), "Personalizing Reinforcement Learning from Human Feedback
with Variational Preference Learning", NeurIPS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from vpl.data.pairs import ContextBatch
from vpl.losses import (
    bradley_terry_nll,
    kl_with_free_bits,
    noisy_logits,
    preference_log_likelihood,
)
from vpl.models.bank import LatentBank
from vpl.models.base import LossOutput, Posterior, register
from vpl.models.effects import context_batch, context_item_effects
from vpl.models.latent import LatentRewardModel
from vpl.models.layers import PairEncoder, SetEncoder, mlp
from vpl.models.mixture import mixture_log_odds


@dataclass(frozen=True)
class VPLConfig:
    """Encoder q(z | context) and latent-conditioned reward r(x, z).

    The measurements behind the defaults are in docs/models.md, "Evidence behind the defaults".
    """

    latent_dim: int = 16
    """Size of the user latent z."""
    hidden: int = 256
    """Width of the reward MLP and the pair encoder."""
    layers: int = 1
    """Hidden layers of the reward MLP and the pair encoder. In `head` mode the reward features
    phi(x) have `layers - 1` hidden layers, so 1 (default) makes them linear in the item
    vector: every user's reward is then linear in x, along a direction that z sets, as in the
    low-rank model. Nonlinear features fit the training questions more closely and can lose on
    new ones. The maze sets 2 (`vpl.control.rewards.RewardConfig.layers`)."""
    set_encoder: str = "mean"
    """How a user's comparisons are pooled: `attention` (seeded self-attention) or `mean`."""
    heads: int = 4
    """Attention heads in the set encoder."""
    beta: float = 0.001
    """Weight of KL(q || prior) relative to the mean per-pair NLL (times the annealing factor).
    Kept small: a larger weight pulls the posterior means toward the prior hard enough to cost
    accuracy on new users."""
    free_bits: float = 0.0
    """Per-dimension KL floor in nats; > 0 guards against posterior collapse."""
    latent_mode: str = "head"
    """How z enters the reward: `concat` (MLP on [x, z]) or `head` (z sets a per-user linear
    head on shared reward features, r = phi(x) . (w + A z))."""
    pair_input: str = "auto"
    """What the pair encoder reads: `items` (the item vectors [c, r]), `features` (the reward's
    own feature difference phi(c) - phi(r); needs latent_mode `head`) or `auto` (`features` in
    head mode, `items` in concat mode). `features` ties what the
    encoder sees to what z acts on, which keeps the latent in use where `items` collapses."""
    init_logvar: float = 0.0
    """Initial posterior log-variance (bias of its output layer). Negative starts with little
    sampling noise, so the reward learns to use z before the KL term pulls it to the prior."""
    context_nll: float = 1.0
    """Weight of the NLL of the context pairs themselves under z (the VAE reconstruction term of
    the paper's ELBO) added to the NLL of the held-apart target pairs."""
    logvar_min: float = -8.0
    """Lower clamp on the posterior log-variance, for numerical stability."""
    inference: str = "auto"
    """How a user's z is inferred outside training: `bank` (the training users' latents
    reweighted by the context likelihood; see the module docstring), `amortized` (the
    encoder's q(z | context), the paper's) or `auto`: `bank` in `head` mode, where scoring a
    context under every bank latent is one matrix product on shared features, and `amortized`
    in `concat` mode, where it runs the whole reward MLP once per bank latent (too slow for
    evaluating thousands of pairs on a CPU). `bank` falls back to `amortized` while the bank is
    empty (during training, so early stopping sees the encoder)."""
    label_noise: float = 0.0
    """Probability that a label is flipped whatever the reward difference (a lapse rate; see
    `vpl.losses.preference_log_likelihood`), in training, in bank inference and in predicted
    probabilities. Plain Bradley-Terry (0) lets one mislabeled pair with a large reward
    difference outweigh several correct ones when a user's latent is inferred from a few
    pairs. The maze, whose simulated users flip 5 % of labels, uses 0.05
    (`vpl.control.rewards.RewardConfig`). Text keeps 0: Personas labels are not flipped, and
    a lapse rate there helps one population of users while it hurts another."""
    bank_size: int = 2048
    """Most latents kept in the latent bank (one per training user by default)."""
    refine_epochs: int = 5
    """With bank inference, after training: epochs of decoder refinement, EM over the training
    users (see `refine` and `refine_latents`). The decoder was trained under latents the
    encoder inferred from small random contexts (0-8 pairs, some of them misidentified);
    refinement retrains it under each user's latent fitted to *all* of the user's pairs, and
    those latents become the bank. The training loop's validation set guards it: the epoch
    with the best validation accuracy is kept, or none. Refinement usually raises accuracy on
    new users and makes the predicted probabilities sharper, a little less calibrated. 0 turns
    it off."""
    refine_lr: float = 3e-4
    """Adam learning rate of the decoder refinement."""
    refine_latents: str = "auto"
    """The E-step of refinement: how each training user's latent is set from all of their
    pairs. `bank`: their bank posterior mean (the bank's encoder latents reweighted by the
    likelihood), once, before the first epoch. `map`: the MAP latent under the prior N(0, I),
    refitted before every epoch (EM); in `head` mode the logit is linear in z, so this is a
    Z-dimensional logistic regression per user, solved by Newton's method. `map` does not rely
    on the encoder, so it recovers where the encoder's latent collapsed (as it can on data
    with few users and a weak signal per pair).
    `auto` (default) in `head` mode without `label_noise`: both from the same start, keeping
    the one with the better validation accuracy (`bank` on ties; `map` when training has no
    validation set); `bank` otherwise. Where the encoder works, MAP latents under N(0, I)
    can be a little worse than the bank's, hence the choice by validation."""
    bank_predict: str = "mixture"
    """With bank inference, how a user's comparisons are predicted: `mixture` (default; the
    posterior predictive, the bank's predictions averaged with the posterior weights: hedged
    where the posterior is spread over latents that disagree, and calibrated) or `mean`
    (under the posterior mean latent, overconfident where the posterior is spread)."""
    bank_temperature: float | None = None
    """Power tau of the context likelihood in the bank posterior (`vpl.models.bank`): None
    (default) chooses it on held-out training users after training, on the pairs that share
    no item with their context (`vpl.train.temper`); 1 is Bayes' rule, 0 the population's
    prediction for everyone."""
    refine_steps: int = 8
    """Newton steps of each MAP latent fit (`refine_latents` `map`)."""
    item_effects: float | None = None
    """Prior variance s^2 of per-user item effects (`vpl.models.effects`): offsets for the
    items of a user's own context, on top of the latent's reward, so that what the context
    says about those very items does not have to move z. None chooses it on held-out training
    users after training (`vpl.train.temper`); 0 turns them off. They are off with
    `label_noise`, whose bounded log-odds they would break."""


@register("vpl")
class VPL(LatentRewardModel):
    """Variational preference learning reward model."""

    Config = VPLConfig
    uses_context = True

    def __init__(self, input_dim: int, config: VPLConfig) -> None:
        super().__init__(input_dim, config)
        c = config
        if c.latent_mode not in ("concat", "head"):
            raise ValueError(f"unknown latent_mode {c.latent_mode!r} (concat, head)")
        if c.pair_input not in ("auto", "items", "features"):
            raise ValueError(f"unknown pair_input {c.pair_input!r} (auto, items, features)")
        if c.pair_input == "features" and c.latent_mode != "head":
            raise ValueError("pair_input='features' needs latent_mode='head'")
        if c.inference not in ("auto", "amortized", "bank"):
            raise ValueError(f"unknown inference {c.inference!r} (auto, amortized, bank)")
        if c.refine_latents not in ("auto", "bank", "map"):
            raise ValueError(f"unknown refine_latents {c.refine_latents!r} (auto, bank, map)")
        if c.refine_latents == "map" and (c.latent_mode != "head" or c.label_noise > 0):
            raise ValueError("refine_latents='map' needs latent_mode='head' and no label_noise")
        if c.bank_predict not in ("mean", "mixture"):
            raise ValueError(f"unknown bank_predict {c.bank_predict!r} (mean, mixture)")
        if not 0.0 <= c.label_noise < 0.5:
            raise ValueError(f"label_noise must be in [0, 0.5), got {c.label_noise}")
        self.latent_dim = c.latent_dim
        self.pair_input = c.pair_input if c.pair_input != "auto" else \
            ("features" if c.latent_mode == "head" else "items")
        if self.pair_input == "items":
            self.pair_encoder = PairEncoder(input_dim, c.hidden, c.hidden, c.layers)
        else:
            self.pair_encoder = mlp(c.hidden, c.hidden, c.hidden, c.layers)
        self.set_encoder = SetEncoder(c.hidden, c.set_encoder, c.heads)
        self.to_posterior = nn.Linear(c.hidden, 2 * c.latent_dim)
        with torch.no_grad():
            self.to_posterior.bias[c.latent_dim:] = c.init_logvar
        if c.latent_mode == "concat":
            self.reward_net = mlp(input_dim + c.latent_dim, c.hidden, 1, c.layers, out_bias=False)
        else:
            self.features = mlp(input_dim, c.hidden, c.hidden, c.layers - 1, out_bias=False)
            self.head_base = nn.Parameter(torch.randn(c.hidden) / c.hidden**0.5)
            self.head_from_z = nn.Linear(c.latent_dim, c.hidden, bias=False)
        self.bank = LatentBank(c.latent_dim, c.bank_size)
        self.register_buffer("item_effect", torch.tensor(float(c.item_effects or 0.0)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        state_dict.setdefault(prefix + "item_effect", torch.tensor(0.0))  # older checkpoints
        old, key = prefix + "latent_bank", prefix + "bank.latents"
        if old in state_dict:  # checkpoints that kept the bank as a buffer of the model
            state_dict[key] = state_dict.pop(old)
        elif key not in state_dict:  # checkpoints from before the bank existed: no bank
            state_dict[key] = torch.zeros(0, self.latent_dim)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def inference(self) -> str:
        """The inference in effect, `bank` or `amortized` (`auto` resolved by latent mode)."""
        if self.config.inference != "auto":
            return self.config.inference
        return "bank" if self.config.latent_mode == "head" else "amortized"

    @property
    def uses_bank(self) -> bool:
        """True when z is inferred from the latent bank (eval mode, bank inference, bank filled)."""
        return self.inference == "bank" and not self.training and len(self.bank) > 0

    def decoder_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters of the reward r(x, z) (not of the encoder), by name."""
        return {name: p for name, p in self.named_parameters()
                if name.split(".")[0] in ("features", "head_base", "head_from_z", "reward_net")}

    def pair_features(self, chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
        """d = phi(c) - phi(r) (..., H) in `head` mode, where a pair's logit is
        d . w + (W^T d) . z with w = `head_base` and W = `head_from_z`."""
        if self.config.latent_mode != "head":
            raise ValueError("pair features need latent_mode='head'")
        if self.config.layers == 1:  # phi is linear: one product of the difference
            return self.features(chosen - rejected)
        return self.features(chosen) - self.features(rejected)

    def pair_head(self, chosen: torch.Tensor, rejected: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """In `head` mode a pair's logit under z is `offset + slopes . z`, with offset d . w
        (...,) and slopes W^T d (..., Z) of its feature difference d. With linear features
        (`layers` 1, phi(x) = F x) they come from the item difference through F^T [w, W],
        (D, 1 + Z), without the H-wide features of every pair."""
        if self.config.latent_mode != "head":
            raise ValueError("pair heads need latent_mode='head'")
        heads = torch.cat([self.head_base.unsqueeze(1), self.head_from_z.weight], 1)  # (H, 1+Z)
        if self.config.layers == 1:
            g = (chosen - rejected) @ (self.features[0].weight.T @ heads)
        else:
            g = self.pair_features(chosen, rejected) @ heads
        return g[..., 0], g[..., 1:]

    @property
    def item_part_weight(self) -> torch.Tensor:
        """The parameter `item_part` depends on first (its version tells when a cache of item
        parts is stale)."""
        if self.config.latent_mode == "concat":
            return self.reward_net[0].weight
        return self.features[0].weight

    def item_part(self, items: torch.Tensor) -> torch.Tensor:
        """The latent-free part of the reward of items (U, D) -> (U, H): the first layer's item
        half in `concat` mode, the shared features phi(x) in `head` mode."""
        if self.config.latent_mode == "concat":
            first = self.reward_net[0]
            return nn.functional.linear(items, first.weight[:, : self.input_dim], first.bias)
        return self.features(items)

    def reward_table(self, item_part: torch.Tensor, z: torch.Tensor,
                     budget: int = 1 << 24) -> torch.Tensor:
        """Reward of every item under every latent, (S, U), from `item_part` (U, H) and z (S, Z);
        equal to `reward` without repeating item-only work per latent. In `concat` mode the
        (S, n, H) hidden activations are built `budget` elements at a time."""
        if self.config.latent_mode == "head":
            return (self.head_base + self.head_from_z(z)) @ item_part.T  # (S, U)
        net = self.reward_net
        h_z = z @ net[0].weight[:, self.input_dim :].T  # (S, H)
        step = max(1, budget // max(h_z.numel(), 1))
        parts = []
        for s in range(0, item_part.shape[0], step):
            h = item_part[s : s + step].unsqueeze(0) + h_z.unsqueeze(1)  # (S, n, H)
            for layer in net[1:]:
                h = layer(h)
            parts.append(h.squeeze(-1))
        return torch.cat(parts, dim=1) if parts else h_z.new_zeros(z.shape[0], 0)

    def bank_differences(self, chosen: torch.Tensor, rejected: torch.Tensor,
                         budget: int = 1 << 24) -> torch.Tensor:
        """Reward differences r(c, z_m) - r(r, z_m) of pairs (..., D) x2 under every bank
        latent -> (..., M), every item through `item_part` once (in `head` mode, where the
        reward is linear in phi, every pair's feature difference)."""
        shape, d = chosen.shape[:-1], chosen.shape[-1]
        if self.config.latent_mode == "head":
            # d . (w + W z_m) = d . w + (W^T d) . z_m: Z products per latent instead of H, and
            # the result comes out (P, M) in row order for the elementwise work that follows
            offset, slopes = self.pair_head(chosen.reshape(-1, d), rejected.reshape(-1, d))
            out = torch.addmm(offset.unsqueeze(1), slopes, self.bank.latents.T)
            return out.reshape(*shape, len(self.bank))
        r = self.reward_table(self.item_part(torch.cat([chosen.reshape(-1, d),
                                                        rejected.reshape(-1, d)])),
                              self.bank.latents, budget)  # (M, 2P)
        n = r.shape[1] // 2
        return (r[:, :n] - r[:, n:]).T.reshape(*shape, r.shape[0])

    def pair_log_likelihood(self, chosen: torch.Tensor, rejected: torch.Tensor,
                            budget: int = 1 << 24) -> torch.Tensor:
        """log p(c beats r | z_m) of pairs (P, D) x2 under every bank latent -> (P, M):
        log sigmoid(r(c, z_m) - r(r, z_m)), with `label_noise` if set."""
        return preference_log_likelihood(self.bank_differences(chosen, rejected, budget),
                                         self.config.label_noise)

    def bank_log_likelihood(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                            ctx_mask: torch.Tensor, budget: int = 1 << 24) -> torch.Tensor:
        """log p(context | z_m) for every bank latent: (B, K, D) x2, (B, K) -> (B, M)."""
        return _context_log_likelihood(
            self.bank_differences(ctx_chosen, ctx_rejected, budget), ctx_mask,
            self.config.label_noise)

    def bank_weights(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                     ctx_mask: torch.Tensor) -> torch.Tensor:
        """Posterior weights (B, M) of the bank latents given each context (uniform prior)."""
        return self.bank.weights(self.bank_log_likelihood(ctx_chosen, ctx_rejected, ctx_mask),
                                 ctx_mask.sum(1))

    def bank_posterior(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                       ctx_mask: torch.Tensor) -> Posterior:
        """The bank posterior summarized as a diagonal Gaussian (weighted mean and variance)."""
        return self.bank.posterior(self.bank_log_likelihood(ctx_chosen, ctx_rejected, ctx_mask),
                                   ctx_mask.sum(1), (self.config.logvar_min, 4.0))

    def infer(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
              ctx_mask: torch.Tensor) -> Posterior:
        """The posterior used for predictions: the bank's or the encoder's (see `inference`)."""
        if self.uses_bank:
            return self.bank_posterior(ctx_chosen, ctx_rejected, ctx_mask)
        return self.encode(ctx_chosen, ctx_rejected, ctx_mask)

    @property
    def _pair_net(self) -> nn.Sequential:
        """The pair encoder's layers (the `PairEncoder`'s MLP when it reads items)."""
        return self.pair_encoder.net if self.pair_input == "items" else self.pair_encoder

    def embed_pairs(self, chosen: torch.Tensor, rejected: torch.Tensor,
                    features: torch.Tensor | None = None) -> torch.Tensor:
        """Per-comparison vectors (..., H) that `pool` pools: the pair encoder's activations
        before its last layer, which `pool` applies (its input itself when it has no hidden
        layer; `features`: the pairs' `pair_features`, when the caller has them)."""
        if self.pair_input == "items":
            x = torch.cat([chosen, rejected], dim=-1)
        else:
            x = self.pair_features(chosen, rejected) if features is None else features
        return self._pair_net[:-1](x)

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> Posterior:
        """q(z | context) from per-pair vectors (B, K, H) of `embed_pairs` and mask (B, K).
        The pair encoder's last layer is affine, so the mean set encoder applies it after the
        mean, once per context instead of once per pair (`SetEncoder`)."""
        pooled = self.set_encoder(h, mask, last=self._pair_net[-1])
        mean, logvar = self.to_posterior(pooled).chunk(2, dim=-1)
        return Posterior(mean, logvar.clamp(self.config.logvar_min, 4.0))

    def encode(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
               ctx_mask: torch.Tensor) -> Posterior:
        """q(z | context) from padded context pairs (B, K, D) and mask (B, K)."""
        return self.pool(self.embed_pairs(ctx_chosen, ctx_rejected), ctx_mask)

    def particles(self, ctx_a: torch.Tensor, ctx_b: torch.Tensor, samples: int,
                  generator: torch.Generator | None = None, *, max_particles: int = 256
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """With bank inference the bank with its posterior weights (`LatentBank.particles`);
        otherwise draws from the encoder's Gaussian."""
        if not self.uses_bank:
            return super().particles(ctx_a, ctx_b, samples, generator,
                                     max_particles=max_particles)
        mask = torch.ones(1, ctx_a.shape[0], dtype=torch.bool, device=ctx_a.device)
        ll = self.bank_log_likelihood(ctx_a.unsqueeze(0), ctx_b.unsqueeze(0), mask)[0]  # (M,)
        return self.bank.particles(ll, ctx_a.shape[0], max_particles, generator)

    def extended_posteriors(self, ctx_a: torch.Tensor, ctx_b: torch.Tensor,
                            ext_a: torch.Tensor, ext_b: torch.Tensor) -> Posterior:
        """The encoder's q(z | context + extra pairs) for M extensions (the amortized
        posterior, whatever `inference` is), the context pairs embedded once for all M."""
        m, e = ext_a.shape[:2]
        mask = torch.ones(m, ctx_a.shape[0] + e, dtype=torch.bool, device=ctx_a.device)
        h_ctx = self.embed_pairs(ctx_a.unsqueeze(0), ctx_b.unsqueeze(0))  # (1, K, H)
        h_ext = self.embed_pairs(ext_a, ext_b)  # (M, E, H)
        return self.pool(torch.cat([h_ctx.expand(m, -1, -1), h_ext], dim=1), mask)

    def reward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Reward of items x (B, T, D) for users with latents z (B, Z) -> (B, T)."""
        zt = z.unsqueeze(1).expand(-1, x.shape[1], -1)  # (B, T, Z)
        if self.config.latent_mode == "concat":
            return self.reward_net(torch.cat([x, zt], dim=-1)).squeeze(-1)
        w = self.head_base + self.head_from_z(zt)  # (B, T, H)
        return (self.features(x) * w).sum(-1)

    def pair_logits(self, chosen: torch.Tensor, rejected: torch.Tensor, z: torch.Tensor
                    ) -> torch.Tensor:
        """Reward differences r(c, z) - r(r, z) of pairs (B, T, D) x2 for latents z (B, Z)
        -> (B, T); in `head` mode from each pair's feature difference."""
        if self.config.latent_mode != "head":
            return self.reward(chosen, z) - self.reward(rejected, z)
        b, t = chosen.shape[:2]
        z = z.expand(b, -1)  # one latent for every row may come as (1, Z)
        h, k = self.config.hidden, 1 + self.latent_dim
        if self.config.layers == 1 and b * (h + t) > (h + b * t) * k:
            # many latents with few pairs each (refinement's: one pair each): per-pair heads
            offset, slopes = self.pair_head(chosen, rejected)  # (B, T), (B, T, Z)
            return torch.baddbmm(offset.unsqueeze(-1), slopes, z.unsqueeze(-1)).squeeze(-1)
        w = self.head_base + self.head_from_z(z)  # (B, H)
        if self.config.layers == 1:  # phi(x) = F x: d . w = (c - r) . F^T w, one per latent
            v = w @ self.features[0].weight  # (B, D)
            return torch.bmm(chosen - rejected, v.unsqueeze(-1)).squeeze(-1)
        return (self.pair_features(chosen, rejected) * w.unsqueeze(1)).sum(-1)

    def _latent(self, post: Posterior, sample: bool) -> torch.Tensor:
        if not sample:
            return post.mean
        return post.mean + torch.randn_like(post.mean) * (0.5 * post.logvar).exp()

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        if self.predicts_bank_mixture:
            return self.scorer(batch)()
        out = self._latent_logits(batch, sample)
        strength = float(self.item_effect)
        if (self.training or strength <= 0 or self.config.label_noise > 0
                or not bool(batch.ctx_mask.any())):
            return out
        ctx_logits = self._latent_logits(context_batch(batch), sample)
        return out + context_item_effects(batch, ctx_logits, strength)

    @property
    def predicts_bank_mixture(self) -> bool:
        """Whether predictions are the bank's posterior predictive (bank inference in effect,
        `bank_predict='mixture'`), which `scorer` computes."""
        return self.uses_bank and self.config.bank_predict == "mixture"

    @property
    def reads_distinct_contexts(self) -> bool:
        """The bank's posterior predictive scores each distinct context pair once."""
        return self.predicts_bank_mixture

    def scorer(self, batch: ContextBatch) -> Callable[[], torch.Tensor]:
        """With the bank's posterior predictive (bank inference, `bank_predict='mixture'`):
        every pair's reward difference under every bank latent is computed here, once; each
        call then weighs them by the bank's current temperature (and hidden latents) and adds
        item effects of the current strength. Otherwise `predict` as is."""
        if not self.predicts_bank_mixture:
            return super().scorer(batch)
        eps = self.config.label_noise
        distinct = batch.ctx_distinct is not None and batch.ctx_slot is not None
        if distinct:
            # each distinct context pair once; every context sums its pairs' rows
            per_pair = self.bank_differences(*batch.ctx_distinct)  # (n, M)
            log_lik = nn.functional.embedding_bag(
                batch.ctx_slot, preference_log_likelihood(per_pair, eps), mode="sum",
                per_sample_weights=batch.ctx_mask.to(per_pair.dtype))  # (B, M)
        else:
            per_pair = self.bank_differences(batch.ctx_chosen, batch.ctx_rejected)  # (B, K, M)
            log_lik = _context_log_likelihood(per_pair, batch.ctx_mask, eps)  # (B, M)
        n_pairs = batch.ctx_mask.sum(1)
        targets = noisy_logits(self.bank_differences(batch.chosen, batch.rejected), eps)
        has_context = bool(batch.ctx_mask.any())
        memo: dict[str, torch.Tensor | None] = {}  # mixtures under the last weighting

        def score() -> torch.Tensor:
            if ("tau" not in memo or not torch.equal(memo["tau"], self.bank.temperature)
                    or memo["hidden"] is not self.bank.hidden):
                memo.clear()
                memo["tau"] = self.bank.temperature.clone()
                memo["hidden"] = self.bank.hidden
                memo["log_w"] = self.bank.log_weights(log_lik, n_pairs)  # (B, M)
                # the posterior predictive sum_m w_m p(y | z_m) as log-odds
                memo["out"] = mixture_log_odds(memo["log_w"], targets)
            strength = float(self.item_effect)
            if strength <= 0 or eps > 0 or not has_context:
                return memo["out"]
            if "ctx" not in memo:
                ctx = per_pair[batch.ctx_slot] if distinct else per_pair  # (B, K, M)
                memo["ctx"] = mixture_log_odds(memo["log_w"], ctx)
            return memo["out"] + context_item_effects(batch, memo["ctx"], strength)

        return score

    def _latent_logits(self, batch: ContextBatch, sample: bool) -> torch.Tensor:
        """Log-odds (B, T) under one latent per row (no item effects)."""
        z = self._latent(self.posterior(batch), sample)
        return noisy_logits(self.pair_logits(batch.chosen, batch.rejected, z),
                            self.config.label_noise)

    def loss(self, batch: ContextBatch, *, kl_weight: float = 1.0) -> LossOutput:
        eps = self.config.label_noise
        use_ctx = self.config.context_nll > 0 and bool(batch.ctx_mask.any())
        if self.config.latent_mode == "head":
            # the context pairs go through the shared features once: the encoder (pair_input
            # `features`) and the context NLL read the same phi(x); the targets need only their
            # logits (`pair_head`)
            ctx_diff = self.pair_features(batch.ctx_chosen, batch.ctx_rejected)
            h = self.embed_pairs(batch.ctx_chosen, batch.ctx_rejected, ctx_diff)
            post = self.pool(h, batch.ctx_mask)
            z = self._latent(post, sample=True)
            logits = self.pair_logits(batch.chosen, batch.rejected, z)
            ctx_logits = None
            if use_ctx:
                w = (self.head_base + self.head_from_z(z)).unsqueeze(1)  # (B, 1, H)
                ctx_logits = (ctx_diff * w).sum(-1)
        else:
            post = self.encode(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask)
            z = self._latent(post, sample=True)
            logits = self.reward(batch.chosen, z) - self.reward(batch.rejected, z)
            ctx_logits = (self.reward(batch.ctx_chosen, z) - self.reward(batch.ctx_rejected, z)
                          if use_ctx else None)
        nll = bradley_terry_nll(logits, batch.target_mask, eps)
        if ctx_logits is not None:
            nll = nll + self.config.context_nll * bradley_terry_nll(ctx_logits, batch.ctx_mask,
                                                                    eps)
        kl = kl_with_free_bits(post.mean, post.logvar, self.config.free_bits)
        loss = nll + self.config.beta * kl_weight * kl
        return LossOutput(loss, logits, {"nll": nll.item(), "kl": kl.item()})


def _context_log_likelihood(diffs: torch.Tensor, mask: torch.Tensor, label_noise: float
                            ) -> torch.Tensor:
    """log p(context | z_m) (B, M) from the context pairs' reward differences under every
    latent (B, K, M) and the mask (B, K) of real pairs."""
    ll = preference_log_likelihood(diffs, label_noise)
    return torch.bmm(mask.to(ll.dtype).unsqueeze(1), ll).squeeze(1)  # the masked sum over K
