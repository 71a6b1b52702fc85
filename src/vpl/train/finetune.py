"""Fine-tuning a causal-LM backbone end to end with LoRA adapters (peft), under the reward
model's own loss (BTL's, VPL's ELBO, any registered model's), as TRL's reward trainer does for
BTL.

Each step samples the usual training batch (targets and a context of the same user), encodes
the texts of every item it touches through the backbone *with* gradients, and backpropagates
the model's loss into both the reward model and the adapters. The item vectors are
[e(prompt), e(response)] exactly as the frozen encoder makes them (`vpl.embed.causal`), so
after training the adapted backbone re-embeds every item, and the ordinary training phases
(VPL's latent bank, the temperature choice) run on those vectors (`finetune_then_fit`). Only
the adapters are saved (safetensors), never the backbone.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vpl.data.contexts import batches_per_epoch, training_batches
from vpl.data.pairs import ContextBatch, PairData
from vpl.embed.causal import CausalLMEncoder
from vpl.embed.encoder import item_vectors
from vpl.losses import kl_anneal
from vpl.models.base import RewardModel
from vpl.train.loop import TrainConfig, TrainResult, fit
from vpl.train.optim import adamw, clip_grad_norm

log = logging.getLogger(__name__)

ADAPTERS = "adapters"
"""Folder of a run directory holding the LoRA adapters (`adapter_model.safetensors`)."""


@dataclass
class LoRAConfig:
    """LoRA adapters on the backbone's attention and how long to train them."""

    r: int = 8
    """Rank of each adapter."""
    alpha: int = 16
    """Scale of the adapters' update (alpha / r)."""
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Linear layers that get adapters (names inside the transformer's blocks)."""
    lr: float = 2e-4
    """Learning rate of the adapters (the reward model keeps `TrainConfig.lr`)."""
    epochs: int = 2
    """Passes over the training pairs with the backbone in the loop."""
    users_per_batch: int = 8
    """Target groups per step (each with its context): the backbone sees every item they use."""
    bf16: bool = True
    """bfloat16 autocast for the backbone on a GPU (ignored on a CPU)."""


def add_adapters(encoder: CausalLMEncoder, cfg: LoRAConfig) -> torch.nn.Module:
    """Wrap the encoder's backbone in trainable LoRA adapters (the base weights frozen)."""
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(encoder.model, LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules)))
    encoder._model = peft
    return peft


def encode_items(encoder: CausalLMEncoder, pairs: Sequence[tuple[str, str]],
                 idx: torch.Tensor) -> torch.Tensor:
    """(U, 2H) vectors [e(prompt), e(response)] of items `idx` (U,), with gradients: the
    same vectors `item_vectors` makes with the same encoder, prompts cut from the left."""
    chosen = [pairs[i] for i in idx.tolist()]
    prompts = sorted({p for p, _ in chosen if p})
    responses = sorted({r for _, r in chosen})
    r_vec = encoder.pooled(responses)  # (R, H)
    r_row = {r: i for i, r in enumerate(responses)}
    out_r = r_vec[[r_row[r] for _, r in chosen]]
    if prompts:
        p_vec = encoder.pooled(encoder.truncate_left(prompts))
        zero = torch.zeros(1, p_vec.shape[1], device=p_vec.device)
        p_all = torch.cat([zero, p_vec])
        p_row = {p: i + 1 for i, p in enumerate(prompts)}
        out_p = p_all[[p_row.get(p, 0) for p, _ in chosen]]
    else:
        out_p = torch.zeros_like(out_r)
    return torch.cat([out_p, out_r], dim=1)


def _index_view(data: PairData) -> PairData:
    """The pairs with each item's 'vector' its own index: batches then carry item indices."""
    return dataclasses.replace(data, items=np.arange(len(data.items), dtype=np.float32)[:, None],
                               _by_user=None)


def _vector_batch(batch: ContextBatch, encoder: CausalLMEncoder,
                  pairs: Sequence[tuple[str, str]]) -> ContextBatch:
    """The batch of item indices (from `_index_view`) with the items encoded, differentiably."""
    parts = (batch.ctx_chosen, batch.ctx_rejected, batch.chosen, batch.rejected)  # (B, M, 1)
    ids = torch.cat(parts, dim=1).squeeze(-1).long()  # (B, sum M)
    uniq, inv = torch.unique(ids, return_inverse=True)
    vec = encode_items(encoder, pairs, uniq)[inv.to(encoder.device)]  # (B, sum M, 2H)
    sizes = [p.shape[1] for p in parts]
    cc, cr, tc, tr = torch.split(vec, sizes, dim=1)
    dev = vec.device
    return ContextBatch(cc, cr, batch.ctx_mask.to(dev), tc, tr, batch.target_mask.to(dev),
                        batch.user.to(dev))


def finetune(model: RewardModel, encoder: CausalLMEncoder, pairs: Sequence[tuple[str, str]],
             train: PairData, cfg: TrainConfig, lora: LoRAConfig, *, progress: bool = True
             ) -> dict[str, float]:
    """Train the reward model and LoRA adapters on the backbone together on `train` (whose
    items are `pairs`, `vpl.embed.encoder.index_comparisons`). Returns the mean loss of each
    epoch and the time taken."""
    from tqdm.auto import tqdm

    dev = encoder.device
    peft = add_adapters(encoder, lora)
    peft.train()
    model.to(dev).train()
    opt = adamw([
        {"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr},
        {"params": [p for p in peft.parameters() if p.requires_grad], "lr": lora.lr}],
        weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    index = _index_view(train)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (
        lora.bf16 and str(dev).startswith("cuda")) else torch.autocast("cpu", enabled=False)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    total = max(1, lora.epochs * batches_per_epoch(train, users_per_batch=lora.users_per_batch,
                                                   targets_per_user=cfg.targets_per_user))
    step = 0
    for epoch in range(lora.epochs):
        model.bind(train)
        losses = []
        for batch in tqdm(training_batches(index, users_per_batch=lora.users_per_batch,
                                           targets_per_user=cfg.targets_per_user,
                                           context_size=cfg.context_size, rng=rng,
                                           variable_context=cfg.variable_context),
                          desc=f"LoRA epoch {epoch}", disable=not progress, leave=False):
            with autocast:
                vb = _vector_batch(batch, encoder, pairs)
            loss = model.loss(vb, kl_weight=kl_anneal(cfg.kl_schedule, step / total)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                clip_grad_norm([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
            opt.step()
            losses.append(float(loss.item()))
            step += 1
        out[f"lora_loss_epoch{epoch}"] = float(np.mean(losses)) if losses else float("nan")
        log.info("LoRA epoch %d: loss %.4f", epoch, out[f"lora_loss_epoch{epoch}"])
    peft.eval()
    model.to("cpu")
    out["lora_seconds"] = time.perf_counter() - t0
    return out


def reembed(encoder: CausalLMEncoder, pairs: Sequence[tuple[str, str]], data: PairData
            ) -> PairData:
    """The same comparisons with every item embedded by the (adapted) backbone."""
    with torch.no_grad():
        x = item_vectors(list(pairs), encoder)
    return dataclasses.replace(data, items=x, _by_user=None)


def finetune_then_fit(model: RewardModel, encoder: CausalLMEncoder,
                      pairs: Sequence[tuple[str, str]], train: PairData, val: PairData | None,
                      cfg: TrainConfig, lora: LoRAConfig, *, progress: bool = True
                      ) -> tuple[TrainResult, PairData, PairData | None]:
    """`finetune`, then re-embed every item with the adapted backbone and run the ordinary
    `fit` on those vectors (the model keeps training from where the joint phase left it, and
    its after-training phases run). Returns the fit's result and the re-embedded splits (val's
    items must be the same `pairs`)."""
    if encoder.cache is not None:
        raise ValueError("fine-tuning changes the backbone: give the encoder cache=False")
    stats = finetune(model, encoder, pairs, train, cfg, lora, progress=progress)
    train_v = reembed(encoder, pairs, train)
    val_v = dataclasses.replace(val, items=train_v.items, _by_user=None) if val is not None \
        else None
    result = fit(model, train_v, val_v, cfg, progress=progress)
    result.after_fit.update(stats)
    return result, train_v, val_v


def save_adapters(encoder: CausalLMEncoder, run_dir: str | os.PathLike) -> Path:
    """Write the encoder's LoRA adapters (only them, as safetensors) to RUN_DIR/adapters."""
    out = Path(run_dir) / ADAPTERS
    encoder.model.save_pretrained(str(out), safe_serialization=True)
    return out
