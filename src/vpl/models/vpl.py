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

import numpy as np
import torch
from torch import nn

from vpl.data.pairs import ContextBatch, PairData, build_batch
from vpl.losses import (
    bradley_terry_nll,
    kl_with_free_bits,
    noisy_logits,
    preference_log_likelihood,
)
from vpl.models.base import LossOutput, Posterior, RewardModel, register
from vpl.models.layers import PairEncoder, SetEncoder, mlp


@dataclass(frozen=True)
class VPLConfig:
    """Encoder q(z | context) and latent-conditioned reward r(x, z)."""

    latent_dim: int = 16
    """Size of the user latent z."""
    hidden: int = 256
    """Width of the reward MLP and the pair encoder."""
    layers: int = 1
    """Hidden layers of the reward MLP and the pair encoder. In `head` mode the reward features
    phi(x) have `layers - 1` hidden layers, so 1 (default) makes them linear in the item
    vector: every user's reward is then linear in x, along a direction that z sets, as in the
    low-rank model. On layer-pooled MiniLM vectors projected to 768 dims (the default
    encoder), seed 0, K=8, exploratory: Personas continuous 0.881 with 1 against 0.845 with 2
    (the nonlinear features fit the training questions and lose on new ones), 4 types 0.976
    against 0.982. The maze sets 2 (`vpl.control.rewards.RewardConfig.layers`)."""
    set_encoder: str = "mean"
    """How a user's comparisons are pooled: `attention` (seeded self-attention) or `mean`."""
    heads: int = 4
    """Attention heads in the set encoder."""
    beta: float = 0.001
    """Weight of KL(q || prior) relative to the mean per-pair NLL (times the annealing factor).
    0.01 pulled the posterior means toward the prior hard enough to cost accuracy: personas-4,
    unseen users, K=8, seeds 0-2: 0.833 / 0.840 / 0.847 with 0.01 vs 0.852 / 0.851 / 0.853
    with 0.001 (0.0001 and 0 gave 0.850 and 0.845 on seed 0; personas-continuous unchanged)."""
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
    empty (during training, so early stopping sees the encoder). `vpl bench --suite full`,
    K=8, 3 seeds, commit da56fde (bank without `refine_epochs`): Personas 4 types 0.869 with
    `bank` vs 0.850 `amortized`, continuous 0.776 vs
    0.771, 2 types 0.873 vs 0.882, Pets full 0.955 vs 0.953."""
    label_noise: float = 0.0
    """Probability that a label is flipped whatever the reward difference (a lapse rate; see
    `vpl.losses.preference_log_likelihood`), in training, in bank inference and in predicted
    probabilities. Plain Bradley-Terry (0) lets one mislabeled pair with a large reward
    difference outweigh several correct ones when a user's latent is inferred from a few
    pairs. The maze, whose simulated users flip 5 % of labels, uses 0.05
    (`vpl.control.rewards.RewardConfig`). Text keeps 0: Personas labels are not flipped, and
    0.05 helped the continuous population but hurt 4 types (K=8, seeds 0 / 2, exploratory
    runs at commit ccb403c: continuous 0.767 -> 0.780, 0.770 -> 0.779; 4 types 0.887 -> 0.875,
    0.890 -> 0.866)."""
    bank_size: int = 2048
    """Most latents kept in the latent bank (one per training user by default)."""
    refine_epochs: int = 5
    """With bank inference, after training: epochs of decoder refinement, EM over the training
    users (see `refine` and `refine_latents`). The decoder was trained under latents the
    encoder inferred from small random contexts (0-8 pairs, some of them misidentified);
    refinement retrains it under each user's latent fitted to *all* of the user's pairs, and
    those latents become the bank. The training loop's validation set guards it: the epoch with the best validation
    accuracy is kept, or none. `vpl bench --suite full`, K=8, 3 seeds, without (commit f98b03f)
    -> 5 unguarded epochs (41e042f) -> guarded (ccb403c): Personas 4 types 0.869 -> 0.883 ->
    0.882, 2 types 0.873 -> 0.886 -> 0.878, continuous 0.776 -> 0.784 -> 0.782, Pets full
    0.955 -> 0.964 -> 0.963, relabeled HH 0.536 -> 0.524 -> 0.533 (NLL on 4 types 0.478 ->
    0.544 -> 0.538: sharper, less calibrated); these used the `bank` E-step. 0 turns it off."""
    refine_lr: float = 3e-4
    """Adam learning rate of the decoder refinement."""
    refine_latents: str = "auto"
    """The E-step of refinement: how each training user's latent is set from all of their
    pairs. `bank`: their bank posterior mean (the bank's encoder latents reweighted by the
    likelihood), once, before the first epoch. `map`: the MAP latent under the prior N(0, I),
    refitted before every epoch (EM); in `head` mode the logit is linear in z, so this is a
    Z-dimensional logistic regression per user, solved by Newton's method. `map` does not rely
    on the encoder, so it recovers where the encoder's latent collapsed. Relabeled HH (two
    users, weak pair signal), K=8, seeds 0-2, exploratory (working tree on commit a97b93e):
    `bank` 0.536 / 0.556 / 0.524 with 1 / 4 / 0 active units (seed 2 fully collapsed), `map`
    0.600 / 0.556 / 0.587 with 15 / 4 / 13 (seed 1: refinement rejected by validation, as
    with `bank`); Personas 4 types seed 0 unchanged (0.976).
    `auto` (default) in `head` mode without `label_noise`: both from the same start, keeping
    the one with the better validation accuracy (`bank` on ties; `map` when training has no
    validation set); `bank` otherwise. Where the encoder works, MAP latents under N(0, I)
    can be a little worse than the bank's: Personas continuous, seeds 0-2, `map` 0.877 /
    0.868 / 0.868 against `bank` 0.881 / 0.873 / 0.868 (exploratory, same working tree;
    `bank` seed 0 from the full suite at commit ae562f9)."""
    refine_steps: int = 8
    """Newton steps of each MAP latent fit (`refine_latents` `map`)."""


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
        self.register_buffer("latent_bank", torch.zeros(0, c.latent_dim))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        key = prefix + "latent_bank"
        if key in state_dict:  # the bank's size is whatever was saved
            self.latent_bank = torch.zeros_like(state_dict[key])
        else:  # checkpoints from before the bank existed: no bank
            state_dict[key] = torch.zeros(0, self.latent_dim)
            self.latent_bank = torch.zeros(0, self.latent_dim)
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
        return (self.inference == "bank" and not self.training
                and self.latent_bank.shape[0] > 0)

    @torch.no_grad()
    def fill_bank(self, data: PairData, context_size: int, seed: int = 0, chunk: int = 256,
                  per_user: int = 1) -> int:
        """Store amortized posterior means of users of `data` in the latent bank, each from
        `context_size` of their pairs drawn at random, `per_user` random contexts per user.
        At most `bank_size` latents: with more users a random subset of them is kept, with
        fewer contexts per user. Returns the bank size.

        One context per user is the default: on Personas (240 training users, K=8) 4 or 8
        contexts per user scored the same (4 types 0.878 / 0.877 vs 0.878) at 4-8x the cost;
        on relabeled HH (2 users, 1 seed) a bank of 128 latents scored 0.530 at K=8, level
        with the amortized posterior."""
        rng = np.random.default_rng(seed)
        groups = list(data.by_user().values())
        size = self.config.bank_size
        groups = [groups[i] for i in self._bank_rows(len(groups), seed)]
        reps = max(1, min(per_user, size // max(len(groups), 1)))
        rows = [idx for idx in groups for _ in range(reps)]
        ctx = np.full((len(rows), max(context_size, 1)), -1, dtype=np.int64)
        for i, idx in enumerate(rows):
            take = rng.permutation(idx)[:context_size]
            ctx[i, : len(take)] = take
        was = self.training
        self.eval()
        means = []
        for s in range(0, len(rows), chunk):
            batch = build_batch(data, ctx[s : s + chunk, :1], data, ctx[s : s + chunk])
            means.append(self.encode(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask).mean)
        self.train(was)
        dev = self.to_posterior.weight.device
        self.latent_bank = (torch.cat(means) if means else torch.zeros(0, self.latent_dim)).to(dev)
        return int(self.latent_bank.shape[0])

    def after_fit(self, train: PairData, context_size: int, seed: int,
                  validate: Callable[[], float] | None = None) -> dict[str, float]:
        """Fill the latent bank from the training users and, with bank inference, refine the
        decoder (`refine_epochs`, guarded by `validate` when given)."""
        self.fill_bank(train, context_size, seed)
        if self.inference == "bank" and self.config.refine_epochs > 0:
            return self.refine(train, self.config.refine_epochs, seed, validate=validate)
        return {}

    @torch.no_grad()
    def user_latents(self, data: PairData, chunk: int = 4096) -> tuple[np.ndarray, torch.Tensor]:
        """The bank posterior mean of every user of `data` given all of that user's pairs:
        (user indices (U,), latents (U, Z)). Likelihoods are accumulated pair by pair, so a user
        with thousands of pairs costs no padding."""
        dev = self.latent_bank.device
        was = self.training
        self.eval()
        ll = torch.zeros(len(data.users), self.latent_bank.shape[0], device=dev)  # (all, M)
        for s in range(0, len(data), chunk):
            ch = torch.from_numpy(data.items[data.chosen[s : s + chunk]]).to(dev)
            rj = torch.from_numpy(data.items[data.rejected[s : s + chunk]]).to(dev)
            ll.index_add_(0, torch.from_numpy(data.user[s : s + chunk]).to(dev),
                          self.pair_log_likelihood(ch, rj))
        self.train(was)
        users = np.unique(data.user)
        w = torch.softmax(ll[torch.from_numpy(users).to(dev)], dim=-1)  # (U, M)
        return users, w @ self.latent_bank

    def refine_candidates(self, validated: bool) -> tuple[str, ...]:
        """The refinement E-steps `refine` runs (`refine_latents`, `auto` resolved): with
        `auto` in `head` mode without `label_noise`, both when a validation set can choose
        (`bank` first), `map` without one; `bank` in the other cases."""
        c = self.config
        if c.refine_latents != "auto":
            return (c.refine_latents,)
        if c.latent_mode != "head" or c.label_noise > 0:
            return ("bank",)
        return ("bank", "map") if validated else ("map",)

    @torch.no_grad()
    def map_latents(self, data: PairData, chunk: int = 4096) -> tuple[np.ndarray, torch.Tensor]:
        """The MAP latent of every user of `data` given all of their pairs, under N(0, I):
        (user indices (U,), latents (U, Z)). In `head` mode a pair's logit is
        d . w + (W^T d) . z with d = phi(c) - phi(r), w = `head_base`, W = `head_from_z`."""
        if self.config.latent_mode != "head":
            raise ValueError("MAP latents need latent_mode='head'")
        from vpl.models.low_rank import map_weights

        dev = self.head_base.device
        was = self.training
        self.eval()
        d = torch.cat([self.features(torch.from_numpy(data.items[data.chosen[s : s + chunk]])
                                     .to(dev))
                       - self.features(torch.from_numpy(data.items[data.rejected[s : s + chunk]])
                                       .to(dev))
                       for s in range(0, len(data), chunk)])  # (P, H)
        self.train(was)
        users, owner = np.unique(data.user, return_inverse=True)
        z_dim = self.latent_dim
        z, _ = map_weights(d @ self.head_from_z.weight, torch.from_numpy(owner).to(dev),
                           len(users), torch.zeros(z_dim, device=dev),
                           torch.eye(z_dim, device=dev), steps=self.config.refine_steps,
                           offset=d @ self.head_base)
        return users, z

    def refine(self, data: PairData, epochs: int, seed: int = 0, batch_size: int = 512,
               validate: Callable[[], float] | None = None) -> dict[str, float]:
        """Refine the decoder (`_refine`) with each E-step of `refine_candidates` from the same
        start, keeping the one with the better validation accuracy (the first on ties).
        Returns `_refine`'s report of the one kept and `refine_map` (1.0 if it was `map`)."""
        candidates = self.refine_candidates(validate is not None)
        start = (self._decoder_state(), self.latent_bank)
        best: tuple[dict[str, float], dict[str, torch.Tensor], torch.Tensor, str] | None = None
        for estep in candidates:
            if best is not None:  # back to the unrefined decoder and bank
                self._set_decoder(*start)
            info = self._refine(data, epochs, seed, batch_size, validate, estep)
            if best is None or info["refine_val_accuracy_after"] > \
                    best[0]["refine_val_accuracy_after"] + 1e-4:  # several only with validate
                best = (info, self._decoder_state(), self.latent_bank, estep)
        info, params, bank, estep = best
        if len(candidates) > 1:
            self._set_decoder(params, bank)
        return {**info, "refine_map": float(estep == "map")}

    def _decoder_parameters(self) -> dict[str, nn.Parameter]:
        return {name: p for name, p in self.named_parameters()
                if name.split(".")[0] in ("features", "head_base", "head_from_z", "reward_net")}

    def _decoder_state(self) -> dict[str, torch.Tensor]:
        """A copy of the decoder parameters, for `_set_decoder`."""
        return {name: p.detach().clone() for name, p in self._decoder_parameters().items()}

    @torch.no_grad()
    def _set_decoder(self, params: dict[str, torch.Tensor], bank: torch.Tensor) -> None:
        """Copy saved decoder parameters (`_decoder_parameters` names) back, and set the bank."""
        for name, p in self._decoder_parameters().items():
            p.copy_(params[name])
        self.latent_bank = bank

    def _refine(self, data: PairData, epochs: int, seed: int, batch_size: int,
                validate: Callable[[], float] | None, estep: str) -> dict[str, float]:
        """EM of the decoder over the users of `data`, the encoder left as it is.

        E (`estep`): each user's latent is set from all of their pairs: their bank
        posterior mean (`user_latents`), once, or their MAP latent (`map_latents`), refitted
        before every epoch. M: an epoch of Adam on the Bradley-Terry NLL (with `label_noise`)
        of every pair under its user's latent, training the reward features and head. The bank
        then holds these latents (a random `bank_size` of them with more users), so a new user
        is scored against the latents the decoder was refined under.

        With `validate` (accuracy on held-out data), the model is scored before refinement and
        after every epoch, and the best state (decoder and bank) is kept, the unrefined one on
        ties: where the decoder overfits the training pairs, refinement stops or is undone.
        Returns `refine_epochs_kept` and, with `validate`, the accuracy before and after."""
        base_acc = validate() if validate is not None else float("nan")
        use_map = estep == "map"
        opt = torch.optim.Adam(list(self._decoder_parameters().values()), lr=self.config.refine_lr)
        gen = torch.Generator().manual_seed(seed)
        dev = self.latent_bank.device
        items = torch.from_numpy(data.items).to(dev)
        chosen = torch.from_numpy(data.chosen).to(dev)
        rejected = torch.from_numpy(data.rejected).to(dev)
        owner = torch.from_numpy(data.user).to(dev)
        was = self.training
        z_of = torch.zeros(len(data.users), self.latent_dim, device=dev)

        def e_step() -> None:
            users, z_users = self.map_latents(data) if use_map else self.user_latents(data)
            z_of[torch.from_numpy(users).to(dev)] = z_users
            keep = torch.from_numpy(self._bank_rows(len(users), seed)).to(dev)
            self.latent_bank = z_users[keep].detach().clone()

        best_acc, kept = base_acc, 0
        saved, saved_bank = (self._decoder_state() if validate is not None else {}), self.latent_bank
        e_step()
        for epoch in range(1, epochs + 1):
            if use_map and epoch > 1:
                e_step()
            self.train()
            order = torch.randperm(len(data), generator=gen).to(dev)
            with torch.enable_grad():
                for s in range(0, len(order), batch_size):
                    i = order[s : s + batch_size]
                    z = z_of[owner[i]]
                    logits = (self.reward(items[chosen[i]].unsqueeze(1), z)
                              - self.reward(items[rejected[i]].unsqueeze(1), z))
                    loss = bradley_terry_nll(logits, label_noise=self.config.label_noise)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            if validate is not None:
                acc = validate()
                if acc > best_acc + 1e-4:
                    best_acc, kept, saved = acc, epoch, self._decoder_state()
                    saved_bank = self.latent_bank
        self.train(was)
        if validate is None:
            return {"refine_epochs_kept": float(epochs)}
        self._set_decoder(saved, saved_bank)
        return {"refine_epochs_kept": float(kept), "refine_val_accuracy_before": base_acc,
                "refine_val_accuracy_after": best_acc}

    def _bank_rows(self, n: int, seed: int) -> np.ndarray:
        """Which of n users the bank keeps: all, or a random `bank_size` of them."""
        size = self.config.bank_size
        if n <= size:
            return np.arange(n)
        return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))

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

    def pair_log_likelihood(self, chosen: torch.Tensor, rejected: torch.Tensor,
                            budget: int = 1 << 24) -> torch.Tensor:
        """log p(c beats r | z_m) of pairs (P, D) x2 under every bank latent -> (P, M):
        log sigmoid(r(c, z_m) - r(r, z_m)), with `label_noise` if set."""
        n = chosen.shape[0]
        r = self.reward_table(self.item_part(torch.cat([chosen, rejected])), self.latent_bank,
                              budget)  # (M, 2P)
        return preference_log_likelihood(r[:, :n] - r[:, n:], self.config.label_noise).T

    def bank_log_likelihood(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                            ctx_mask: torch.Tensor, budget: int = 1 << 24) -> torch.Tensor:
        """log p(context | z_m) for every bank latent: (B, K, D) x2, (B, K) -> (B, M)."""
        b, k, d = ctx_chosen.shape
        ll = self.pair_log_likelihood(ctx_chosen.reshape(b * k, d),
                                      ctx_rejected.reshape(b * k, d), budget)  # (BK, M)
        return (ll.reshape(b, k, ll.shape[1]) * ctx_mask.unsqueeze(-1)).sum(1)  # (B, M)

    def bank_weights(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                     ctx_mask: torch.Tensor) -> torch.Tensor:
        """Posterior weights (B, M) of the bank latents given each context (uniform prior)."""
        return torch.softmax(self.bank_log_likelihood(ctx_chosen, ctx_rejected, ctx_mask), -1)

    def bank_posterior(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                       ctx_mask: torch.Tensor) -> Posterior:
        """The bank posterior summarized as a diagonal Gaussian (weighted mean and variance)."""
        w = self.bank_weights(ctx_chosen, ctx_rejected, ctx_mask)  # (B, M)
        mean = w @ self.latent_bank  # (B, Z)
        var = w @ self.latent_bank.pow(2) - mean.pow(2)
        logvar = var.clamp_min(0.0).add(1e-12).log()
        return Posterior(mean, logvar.clamp(self.config.logvar_min, 4.0))

    def infer(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
              ctx_mask: torch.Tensor) -> Posterior:
        """The posterior used for predictions: the bank's or the encoder's (see `inference`)."""
        if self.uses_bank:
            return self.bank_posterior(ctx_chosen, ctx_rejected, ctx_mask)
        return self.encode(ctx_chosen, ctx_rejected, ctx_mask)

    def embed_pairs(self, chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
        """Per-comparison vectors (..., H) of the pair encoder, before pooling."""
        if self.pair_input == "items":
            return self.pair_encoder(chosen, rejected)
        return self.pair_encoder(self.features(chosen) - self.features(rejected))

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> Posterior:
        """q(z | context) from per-pair vectors (B, K, H) and mask (B, K)."""
        mean, logvar = self.to_posterior(self.set_encoder(h, mask)).chunk(2, dim=-1)
        return Posterior(mean, logvar.clamp(self.config.logvar_min, 4.0))

    def encode(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
               ctx_mask: torch.Tensor) -> Posterior:
        """q(z | context) from padded context pairs (B, K, D) and mask (B, K)."""
        return self.pool(self.embed_pairs(ctx_chosen, ctx_rejected), ctx_mask)

    def posterior(self, batch: ContextBatch) -> Posterior:
        return self.infer(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask)

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
        return noisy_logits(self.reward(batch.chosen, z) - self.reward(batch.rejected, z),
                            self.config.label_noise)

    def loss(self, batch: ContextBatch, *, kl_weight: float = 1.0) -> LossOutput:
        eps = self.config.label_noise
        use_ctx = self.config.context_nll > 0 and bool(batch.ctx_mask.any())
        if self.config.latent_mode == "head":
            # every item goes through the shared features once: the encoder (pair_input
            # `features`), the target and the context NLL all read the same phi(x)
            ctx_diff = self.features(batch.ctx_chosen) - self.features(batch.ctx_rejected)
            h = (self.pair_encoder(ctx_diff) if self.pair_input == "features"
                 else self.pair_encoder(batch.ctx_chosen, batch.ctx_rejected))
            post = self.pool(h, batch.ctx_mask)
            z = self._latent(post, sample=True)
            w = (self.head_base + self.head_from_z(z)).unsqueeze(1)  # (B, 1, H)
            diff = self.features(batch.chosen) - self.features(batch.rejected)
            logits = (diff * w).sum(-1)
            ctx_logits = (ctx_diff * w).sum(-1) if use_ctx else None
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
