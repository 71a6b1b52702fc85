"""VPL's training phase after the loop: fill the latent bank, then refine the decoder by EM.

The decoder was trained under latents the encoder inferred from small random contexts (0-K
pairs, some of them misidentified). Refinement retrains it under each training user's latent
fitted to *all* of the user's pairs, and those latents become the bank:

* E-step (`VPLConfig.refine_latents`): `bank`, each user's bank posterior mean given all of
  their pairs, once; or `map`, each user's MAP latent under N(0, I), refitted before every
  epoch (in `head` mode the logit is linear in z, so this is a per-user logistic regression
  solved by Newton's method; it does not rely on the encoder, so it recovers a collapsed one).
* M-step: an epoch of Adam on the Bradley-Terry NLL of every pair under its user's latent,
  training the reward features and head; the encoder is left as it is.

With a validation function the model is scored before refinement and after every epoch and
the best state (decoder and bank) is kept, the unrefined one on ties; `auto` runs both
E-steps from the same start and keeps the better.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from vpl import distributed
from vpl.data.contexts import sample_user_contexts
from vpl.data.pairs import PairData, build_batch
from vpl.losses import bradley_terry_nll
from vpl.models.bank import subsample_rows
from vpl.models.solvers import newton_map
from vpl.models.vpl import VPL, VPLConfig
from vpl.train.optim import adamw

Validate = Callable[[], float]


@torch.no_grad()
def fill_bank(model: VPL, data: PairData, context_size: int, seed: int = 0, chunk: int = 256,
              per_user: int = 1) -> int:
    """Store amortized posterior means of users of `data` in the model's latent bank, each from
    `context_size` of their pairs drawn at random, `per_user` random contexts per user.
    At most `bank_size` latents: with more users a random subset of them is kept, with
    fewer contexts per user. Returns the bank size."""
    rng = np.random.default_rng(seed)
    users = np.array(sorted(data.by_user()), dtype=np.int64)
    size = model.config.bank_size
    users = users[subsample_rows(len(users), size, seed)]
    reps = max(1, min(per_user, size // max(len(users), 1)))
    ctx = sample_user_contexts(data, np.repeat(users, reps), context_size, rng,
                               width=max(context_size, 1))  # (rows, K)
    was = model.training
    model.eval()
    dev = model.to_posterior.weight.device
    means = [torch.zeros(0, model.latent_dim, device=dev)]
    mine = ctx[distributed.my_slice(len(ctx))]  # each process encodes a share of the users
    for s in range(0, len(mine), chunk):
        batch = build_batch(data, mine[s : s + chunk, :1], data, mine[s : s + chunk])
        means.append(model.encode(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask).mean)
    model.train(was)
    model.bank.latents = distributed.gather_rows(torch.cat(means).to(dev))
    model.bank.owners = np.repeat(users, reps)
    return len(model.bank)


@torch.no_grad()
def user_latents(model: VPL, data: PairData, chunk: int = 4096) -> tuple[np.ndarray, torch.Tensor]:
    """The bank posterior mean of every user of `data` given all of that user's pairs:
    (user indices (U,), latents (U, Z)). Likelihoods are accumulated pair by pair, so a user
    with thousands of pairs costs no padding."""
    bank = model.bank.latents
    dev = bank.device
    was = model.training
    model.eval()
    ll = torch.zeros(len(data.users), bank.shape[0], device=dev)  # (all, M)
    for s in range(0, len(data), chunk):
        ch = torch.from_numpy(data.items[data.chosen[s : s + chunk]]).to(dev)
        rj = torch.from_numpy(data.items[data.rejected[s : s + chunk]]).to(dev)
        ll.index_add_(0, torch.from_numpy(data.user[s : s + chunk]).to(dev),
                      model.pair_log_likelihood(ch, rj))
    model.train(was)
    users, counts = np.unique(data.user, return_counts=True)
    w = model.bank.weights(ll[torch.from_numpy(users).to(dev)],
                           torch.from_numpy(counts).to(dev))  # (U, M)
    return users, w @ bank


@torch.no_grad()
def map_latents(model: VPL, data: PairData, chunk: int = 4096) -> tuple[np.ndarray, torch.Tensor]:
    """The MAP latent of every user of `data` given all of their pairs, under N(0, I):
    (user indices (U,), latents (U, Z)); needs `head` mode (`VPL.pair_head`)."""
    dev = model.head_base.device
    was = model.training
    model.eval()
    heads = [model.pair_head(torch.from_numpy(data.items[data.chosen[s : s + chunk]]).to(dev),
                             torch.from_numpy(data.items[data.rejected[s : s + chunk]]).to(dev))
             for s in range(0, len(data), chunk)]
    offset, slopes = torch.cat([h[0] for h in heads]), torch.cat([h[1] for h in heads])
    model.train(was)
    users, owner = np.unique(data.user, return_inverse=True)
    z_dim = model.latent_dim
    z, _ = newton_map(slopes, torch.from_numpy(owner).to(dev), len(users),
                      torch.zeros(z_dim, device=dev), torch.eye(z_dim, device=dev),
                      steps=model.config.refine_steps, offset=offset)
    return users, z


def refine_candidates(config: VPLConfig, validated: bool) -> tuple[str, ...]:
    """The E-steps `refine` tries (`refine_latents`, `auto` resolved): with `auto` in `head`
    mode without `label_noise`, both when a validation set can choose (`bank` first), `map`
    without one; `bank` in the other cases."""
    if config.refine_latents != "auto":
        return (config.refine_latents,)
    if config.latent_mode != "head" or config.label_noise > 0:
        return ("bank",)
    return ("bank", "map") if validated else ("map",)


def _decoder_state(model: VPL) -> dict[str, torch.Tensor]:
    """A copy of the decoder parameters, for `_set_decoder`."""
    return {name: p.detach().clone() for name, p in model.decoder_parameters().items()}


Bank = tuple[torch.Tensor, "np.ndarray | None"]


def _bank_state(model: VPL) -> Bank:
    """The bank's latents and their owners, for `_set_decoder`."""
    return model.bank.latents, model.bank.owners


@torch.no_grad()
def _set_decoder(model: VPL, params: dict[str, torch.Tensor], bank: Bank) -> None:
    """Copy saved decoder parameters back, and set the bank."""
    for name, p in model.decoder_parameters().items():
        p.copy_(params[name])
    model.bank.latents, model.bank.owners = bank


def refine(model: VPL, data: PairData, epochs: int, seed: int = 0, batch_size: int = 512,
           validate: Validate | None = None) -> dict[str, float]:
    """Refine the decoder with each E-step of `refine_candidates` from the same start, keeping
    the one with the better validation accuracy (the first on ties). Returns `refine_epochs`'s
    report of the one kept and `refine_map` (1.0 if it was `map`)."""
    candidates = refine_candidates(model.config, validate is not None)
    start = (_decoder_state(model), _bank_state(model))
    best: tuple[dict[str, float], dict[str, torch.Tensor], Bank, str] | None = None
    for estep in candidates:
        if best is not None:  # back to the unrefined decoder and bank
            _set_decoder(model, *start)
        info = refine_epochs(model, data, epochs, seed, batch_size, validate, estep)
        if best is None or info["refine_val_accuracy_after"] > \
                best[0]["refine_val_accuracy_after"] + 1e-4:  # several only with validate
            best = (info, _decoder_state(model), _bank_state(model), estep)
    info, params, bank, estep = best
    if len(candidates) > 1:
        _set_decoder(model, params, bank)
    return {**info, "refine_map": float(estep == "map")}


def _m_step(model: VPL, data: PairData, z_of: torch.Tensor, opt: torch.optim.Optimizer,
            gen: torch.Generator, batch_size: int) -> None:
    """One epoch of Adam on the BT NLL of every pair of `data` under its user's latent."""
    dev = z_of.device
    items = torch.from_numpy(data.items).to(dev)
    chosen = torch.from_numpy(data.chosen).to(dev)
    rejected = torch.from_numpy(data.rejected).to(dev)
    owner = torch.from_numpy(data.user).to(dev)
    model.train()
    order = torch.randperm(len(data), generator=gen).to(dev)
    with torch.enable_grad():
        for s in range(0, len(order), batch_size):
            i = order[s : s + batch_size]
            z = z_of[owner[i]]
            logits = model.pair_logits(items[chosen[i]].unsqueeze(1),
                                       items[rejected[i]].unsqueeze(1), z)
            loss = bradley_terry_nll(logits, label_noise=model.config.label_noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def refine_epochs(model: VPL, data: PairData, epochs: int, seed: int, batch_size: int,
                  validate: Validate | None, estep: str) -> dict[str, float]:
    """EM of the decoder over the users of `data` with E-step `estep` (`bank` or `map`).
    The bank then holds the E-step latents (a random `bank_size` of them with more users).
    Returns `refine_epochs_kept` and, with `validate`, the accuracy before and after."""
    base_acc = validate() if validate is not None else float("nan")
    use_map = estep == "map"
    opt = adamw(model.decoder_parameters().values(), lr=model.config.refine_lr,
                weight_decay=0.0)  # Adam
    gen = torch.Generator().manual_seed(seed)
    dev = model.bank.latents.device
    was = model.training
    z_of = torch.zeros(len(data.users), model.latent_dim, device=dev)

    def e_step() -> None:
        users, z_users = map_latents(model, data) if use_map else user_latents(model, data)
        z_of[torch.from_numpy(users).to(dev)] = z_users
        model.bank.fill(z_users, seed, owners=users)

    best_acc, kept = base_acc, 0
    saved = _decoder_state(model) if validate is not None else {}
    saved_bank = _bank_state(model)
    e_step()
    for epoch in range(1, epochs + 1):
        if use_map and epoch > 1:
            e_step()
        _m_step(model, data, z_of, opt, gen, batch_size)
        if validate is not None:
            acc = validate()
            if acc > best_acc + 1e-4:
                best_acc, kept, saved = acc, epoch, _decoder_state(model)
                saved_bank = _bank_state(model)
    model.train(was)
    if validate is None:
        return {"refine_epochs_kept": float(epochs)}
    _set_decoder(model, saved, saved_bank)
    return {"refine_epochs_kept": float(kept), "refine_val_accuracy_before": base_acc,
            "refine_val_accuracy_after": best_acc}
