"""One training loop for every reward model: seeded, KL-annealed, early-stopped."""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from vpl import distributed
from vpl.data.contexts import batches_per_epoch, training_batches
from vpl.data.pairs import PairData
from vpl.losses import kl_anneal
from vpl.models import RewardModel
from vpl.train.callbacks import Callback, callbacks_for
from vpl.train.logging import Logger, NullLogger
from vpl.train.optim import adamw, clip_grad_norm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings shared by all models.

    The measurements behind the defaults are in docs/models.md, "Evidence behind the defaults".
    """

    epochs: int = 60
    """Maximum passes over the training pairs."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    users_per_batch: int | None = None
    """Target groups (each from one user) per batch, per process under a launcher
    (`vpl.distributed`): N processes make N times larger steps. None: 16 for models that read
    a user's context (`RewardModel.uses_context`), 8 for those that do not. A step's cost is
    mostly per step, so 16 groups train 1.45x the pairs/s of 8; chosen on held-out training
    users of the real sets, where it matched 8 (docs/models.md). Models without a context keep
    8: there it only makes larger steps of plain pairs."""
    targets_per_user: int = 8
    """Target pairs scored per group; they share one context."""
    context_size: int = 8
    """K: context pairs per group (padded and masked when a user has fewer)."""
    variable_context: bool = True
    """Train half the groups with a context size drawn from 0..K so any K works at test time."""
    kl_schedule: str = "linear"
    """KL annealing: linear, cosine, cyclical or constant."""
    patience: int | None = None
    """Stop after this many epochs without a better validation accuracy; None: 20 for models
    that read a user's context, 10 for those that do not (`RewardModel.uses_context`).
    Personalized models can climb slowly or plateau before their user representation comes
    into use, and stop too early with a short patience; models without a context peak early,
    and the shorter patience wastes fewer epochs after their best."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    seed: int = 0
    """Seeds numpy, torch and Python's random."""
    device: str = "cpu"
    """Torch device."""
    threads: int = 1
    """CPU threads for training (0: torch's default). The models are small, so one thread
    avoids synchronization overhead and is not slowed down by other busy processes."""
    selection_users: float = 0.15
    """Share of the training users kept out of training for the phases that choose, on users
    the model has never seen, how far to personalize (VPL's bank temperature and item effects;
    `vpl.train.temper`). Only models with such a phase hold users out, and only from
    `selection_min_users` training users on; with fewer, those phases cross-validate over the
    training users instead. 0: never hold users out."""
    selection_min_users: int = 500
    """Fewest training users from which `selection_users` are held out. Below it, a held-out
    share is too few users to choose on and costs the decoder more of its data than the choice
    gains; cross-validation over the training users chooses instead (the Personas evidence is
    in docs/results.md)."""
    identity_dropout: float = 0.5
    """Where item vectors carry identity codes (`vpl.embed.identity`): the share of items whose
    code is zeroed in each epoch, so the text path alone learns to score items never seen in
    training."""


@dataclass
class TrainResult:
    """What training did: per-epoch history, the best epoch and wall time."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_accuracy: float = float("nan")
    seconds: float = 0.0
    pairs_per_second: float = 0.0
    after_fit: dict[str, float] = field(default_factory=dict)
    """What the phases after the loop reported (e.g. VPL's decoder refinement)."""


def split_selection_users(train: PairData, val: PairData | None, share: float, seed: int,
                          min_users: int = TrainConfig.selection_min_users
                          ) -> tuple[PairData, PairData | None, PairData | None]:
    """(training pairs, validation pairs, pairs of the held-out selection users): a seeded
    random `share` of the users of `train` (none below `min_users` users), their validation
    pairs dropped too."""
    users = np.unique(train.user)
    n = int(round(share * len(users)))
    if share <= 0 or len(users) < min_users or n < 1:
        return train, val, None
    held = np.random.default_rng(seed).permutation(users)[:n]
    out = np.isin(train.user, held)
    keep_val = val
    if val is not None:
        keep_val = val.subset(np.flatnonzero(~np.isin(val.user, held)))
    return (train.subset(np.flatnonzero(~out)), keep_val, train.subset(np.flatnonzero(out)))


def groups_per_step(cfg: TrainConfig, model: RewardModel) -> int:
    """`cfg.users_per_batch`, or its default for `model` where it is None."""
    if cfg.users_per_batch is not None:
        return cfg.users_per_batch
    return 16 if model.uses_context else 8


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(model: RewardModel, train: PairData, val: PairData | None = None,
        config: TrainConfig | None = None, *, progress: bool = True,
        callbacks: Sequence[Callback] | None = None, logger: Logger | None = None
        ) -> TrainResult:
    """Train `model` on `train`, early-stopping on accuracy over `val` (contexts from train).

    The best weights (by validation accuracy) are restored at the end, then the callbacks'
    `on_fit_end` phases run (default: `callbacks_for(model)`, e.g. VPL's bank and
    refinement). When a callback chooses settings on held-out users (its
    `selects_on_users(model)` is true),
    `TrainConfig.selection_users` of the users are kept out of training for it.
    `logger` receives every epoch's metrics (default: none).

    Under a launcher (`torchrun`, `accelerate launch`) the processes train together
    (`vpl.distributed`): each builds its share of every step's batches, `users_per_batch`
    groups per process, and gradients are averaged.
    """
    cfg = config or TrainConfig()
    distributed.setup()
    threads_before = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        cbs = callbacks_for(model) if callbacks is None else list(callbacks)
        held = None
        if any(getattr(cb, "selects_on_users", lambda m: False)(model) for cb in cbs):
            train, val, held = split_selection_users(train, val, cfg.selection_users, cfg.seed,
                                                      cfg.selection_min_users)
        return _fit(model, train, val, held, cfg, progress, cbs, logger or NullLogger())
    finally:
        torch.set_num_threads(threads_before)


def _drop_identity(data: PairData, share: float, rng: np.random.Generator) -> PairData:
    """`data` with the identity codes of a random `share` of its items zeroed (none without
    codes)."""
    if not data.id_dim or share <= 0:
        return data
    items = data.items.copy()
    items[rng.random(len(items)) < share, -data.id_dim:] = 0.0
    return dataclasses.replace(data, items=items, _by_user=data._by_user)


def _validator(model: RewardModel, val: PairData | None, train: PairData, cfg: TrainConfig
               ) -> Callable[[], float] | None:
    """Accuracy on `val` with contexts from `train` (the same contexts every call). With
    several processes each scores a share of the validation users and the counts are summed."""
    from vpl.evaluate import evaluate_pairs  # evaluate imports models; keep train importable

    if val is None or not len(val):
        return None
    if not distributed.active():
        return lambda: evaluate_pairs(model, val, pool=train, context_size=cfg.context_size,
                                      seed=cfg.seed, device=cfg.device).accuracy
    users = np.unique(val.user)
    mine = val.subset(np.flatnonzero(np.isin(val.user, users[distributed.my_slice(len(users))])))

    def validate() -> float:
        right = 0.0
        if len(mine):
            right = float(evaluate_pairs(model, mine, pool=train, context_size=cfg.context_size,
                                         seed=cfg.seed, device=cfg.device).correct.sum())
        right, n = distributed.sum_across([right, len(mine)])
        return right / n

    return validate


def _fit(model: RewardModel, train: PairData, val: PairData | None, held: PairData | None,
         cfg: TrainConfig, progress: bool, callbacks: list[Callback], logger: Logger
         ) -> TrainResult:
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.to(cfg.device)
    params = list(model.parameters())  # listed once: walking the modules costs every step
    opt = adamw(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = TrainResult()
    validate = _validator(model, val, train, cfg)
    patience = cfg.patience if cfg.patience is not None else (20 if model.uses_context else 10)
    groups = groups_per_step(cfg, model)
    best_state, best_acc, stale = None, -1.0, 0
    shard = distributed.shard()
    distributed.broadcast_state(model)
    n_batches = batches_per_epoch(train, users_per_batch=groups,
                                  targets_per_user=cfg.targets_per_user, world=shard[1])
    total = max(1, cfg.epochs * n_batches)
    step, pairs_seen, t0, train_seconds = 0, 0, time.perf_counter(), 0.0
    bar = tqdm(range(cfg.epochs), desc=f"train {model.name}", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        model.bind(train)
        for cb in callbacks:
            cb.on_epoch_start(model, train, rng)
        sums: dict[str, float] = {}
        nb = 0
        t_epoch = time.perf_counter()
        for batch in training_batches(_drop_identity(train, cfg.identity_dropout, rng),
                                      users_per_batch=groups,
                                      targets_per_user=cfg.targets_per_user,
                                      context_size=cfg.context_size, rng=rng,
                                      variable_context=cfg.variable_context, shard=shard):
            batch = batch.to(cfg.device)
            out = model.loss(batch, kl_weight=kl_anneal(cfg.kl_schedule, step / total))
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            distributed.average_gradients(params)
            if cfg.grad_clip > 0:
                clip_grad_norm(params, cfg.grad_clip)
            opt.step()
            step += 1
            nb += 1
            pairs_seen += int(batch.target_mask.sum())
            sums["loss"] = sums.get("loss", 0.0) + out.loss.item()
            for k, v in out.metrics.items():
                sums[k] = sums.get(k, 0.0) + v
        train_seconds += time.perf_counter() - t_epoch
        keys = sorted(sums)  # every process has the same keys and number of batches
        sums = dict(zip(keys, distributed.sum_across([sums[k] for k in keys]), strict=True))
        nb *= shard[1]
        row = {"epoch": epoch, **{k: v / max(nb, 1) for k, v in sums.items()}}
        if validate is not None:
            acc = row["val_accuracy"] = validate()
        else:
            acc = -row["loss"]
        result.history.append(row)
        logger.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
        bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{row.get('val_accuracy', float('nan')):.3f}")
        if acc > best_acc + 1e-4:
            best_acc, stale, result.best_epoch = acc, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= patience:
                log.info("early stop at epoch %d (best %d)", epoch, result.best_epoch)
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    for cb in callbacks:  # every process runs them alike (VPL's bank is filled in shares)
        result.after_fit.update(cb.on_fit_end(model, train, cfg, validate, held))
    distributed.broadcast_state(model)  # rank 0's result, should the processes differ
    if result.after_fit:
        logger.log_metrics(result.after_fit, step=len(result.history))
    model.eval()
    result.seconds = time.perf_counter() - t0
    # optimizer steps only, of all processes
    result.pairs_per_second = distributed.sum_across([pairs_seen])[0] / max(train_seconds, 1e-9)
    result.best_val_accuracy = best_acc if val is not None and len(val) else float("nan")
    return result
