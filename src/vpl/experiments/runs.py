"""End-to-end runs: load and embed data, split by user, train, evaluate, save a run directory.

A run directory holds everything needed to reload and re-evaluate a model:
`model.safetensors` + `model.json` (weights and config), `run.json` (data, field names,
encoder, training config), `split.json` (unseen users and held-out pairs), `metrics.json` and,
where the item vectors were projected (`item_dim`), `projection.safetensors`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vpl import distributed
from vpl.checkpoint import save_model
from vpl.data.io import FieldMap, atomic_write_text, load_records, replace_dir
from vpl.data.pairs import PairData
from vpl.data.schema import Comparison
from vpl.data.split import Split, make_split
from vpl.embed import DEFAULT_ENCODER, DEFAULT_ITEM_DIM
from vpl.embed.causal import LORA_MARK
from vpl.embed.identity import IDENTITY
from vpl.embed.precompute import precompute
from vpl.embed.projection import PROJECTION
from vpl.evaluate import evaluate_pairs, latent_diagnostics
from vpl.experiments.prepare import Embedded, embed_parts, get_encoder, pick
from vpl.models import RewardModel, build_for
from vpl.models.presets import resolve
from vpl.train import Logger, TrainConfig, TrainResult, fit, seed_everything
from vpl.train.finetune import ADAPTERS, LoRAConfig

log = logging.getLogger(__name__)

FEW_SHOT_K = (0, 1, 2, 4, 8, 16)


def few_shot_curve(model: RewardModel, targets: PairData, pool: PairData | None = None,
                   ks: Sequence[int] = FEW_SHOT_K, seed: int = 0) -> dict[str, dict[str, float]]:
    """Accuracy (all pairs and item-disjoint) at each context size K."""
    out = {}
    for k in ks:
        s = evaluate_pairs(model, targets, pool, context_size=k, seed=seed)
        out[str(k)] = {"accuracy": s.accuracy, "accuracy_item_disjoint": s.accuracy_item_disjoint}
    return out


def run_metrics(model: RewardModel, train: PairData, val: PairData, test: PairData,
                cfg: TrainConfig) -> dict[str, Any]:
    """Scores of a trained model on the held-out pairs of seen users (contexts from their
    training pairs) and on unseen users (contexts from their own pairs), at K and at every K
    of `FEW_SHOT_K`, and the latent diagnostics."""
    k = cfg.context_size
    metrics: dict[str, Any] = {}
    if len(val):
        s = evaluate_pairs(model, val, pool=train, context_size=k, seed=cfg.seed)
        metrics["seen_users"] = {key: v for key, v in s.summary().items() if key != "per_user"}
        metrics["accuracy_seen_users"] = s.accuracy
        metrics["few_shot_seen_users"] = few_shot_curve(model, val, train, seed=cfg.seed)
    if len(test):
        s = evaluate_pairs(model, test, context_size=k, seed=cfg.seed)
        metrics["unseen_users"] = {key: v for key, v in s.summary().items() if key != "per_user"}
        metrics["accuracy_unseen_users"] = s.accuracy
        metrics["few_shot_unseen_users"] = few_shot_curve(model, test, seed=cfg.seed)
    diag = latent_diagnostics(model, test if len(test) else train, context_size=k,
                              seed=cfg.seed)
    if diag:
        metrics["latent"] = diag
    return metrics


def _write_run_dir(final: Path, model: RewardModel, emb: Embedded, split: Split,
                   run: dict[str, Any], metrics: dict[str, Any],
                   extra: Callable[[Path], object] | None = None) -> None:
    """Write a run directory into a temporary one and swap it into place when complete
    (`extra` writes more files into the temporary one)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        save_model(model, tmp)
        if extra is not None:
            extra(tmp)
        if emb.projection is not None:
            emb.projection.save(tmp / PROJECTION)
        if emb.identity is not None:
            emb.identity.save(tmp / IDENTITY)
        split.save(tmp / "split.json")
        atomic_write_text(tmp / "run.json", json.dumps(run, indent=2))
        atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=2))
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def train_run(data: str | os.PathLike | Sequence[str | os.PathLike], model_name: str,
              out: str | os.PathLike, *, train_config: TrainConfig | None = None,
              model_options: dict[str, Any] | None = None, fields: FieldMap | None = None,
              test_users: float = 0.2, heldout_pairs: float = 0.2, on_error: str = "abort",
              embed_model: str = DEFAULT_ENCODER, item_dim: int | None = DEFAULT_ITEM_DIM,
              progress: bool = True, logger: Logger | None = None, identity: str = "off",
              lora: LoRAConfig | None = None) -> dict[str, Any]:
    """Train one model on a data file and write a complete run directory; returns metrics.

    Item vectors wider than `item_dim` are projected onto that many principal components of
    the training pairs' items (`vpl.embed.projection`; None or 0: never), saved with the run.
    With `lora`, the causal-LM backbone `embed_model` is fine-tuned with LoRA adapters through
    the model's loss (`vpl.train.finetune`; raw item vectors, no projection), and the run saves
    the adapters and names them in its `embed_model`.

    Files are written to a temporary directory and moved into place only when the run
    succeeded, so a failed run leaves an earlier run at `out` intact. Under a launcher
    (`vpl.distributed`) the processes share embedding and training; rank 0 alone evaluates
    and writes the run, and the others return {"model", "rank"}.
    """
    cfg = train_config or TrainConfig()
    fields = fields or FieldMap()
    paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    t0 = time.perf_counter()
    records, report = load_records(paths, fields, on_error=on_error)
    split = make_split(records, test_users=test_users, heldout_pairs=heldout_pairs,
                       seed=cfg.seed)
    parts = dict(zip(("train", "val", "test"), ((0, p) for p in split.partition(records)),
                     strict=True))
    registry_name, options = resolve(model_name, **(model_options or {}))
    adapters = None
    rank, world = distributed.setup()
    if lora is None:
        encoder = get_encoder(embed_model, progress=progress)
        if world > 1 and encoder.cache is not None:  # each process embeds a share, once
            precompute(records, encoder, rank=rank, world=world)
            distributed.barrier()
        emb = embed_parts([records], parts, encoder, item_dim, identity=identity)
        train, val = emb.parts["train"], emb.parts["val"]
        t_embed = time.perf_counter() - t0
        seed_everything(cfg.seed)
        model = build_for(registry_name, train, **options)
        result: TrainResult = fit(model, train, val if len(val) else None, cfg,
                                  progress=progress, logger=logger)
    else:
        t_embed = 0.0
        model, result, emb, adapters = _finetuned(records, parts, embed_model, registry_name,
                                                  options, cfg, lora, progress)
        embed_model = f"{embed_model}{LORA_MARK}{Path(out).resolve() / ADAPTERS}"
    (pairs,), projection = emb.blocks, emb.projection
    train, val, test = emb.parts["train"], emb.parts["val"], emb.parts["test"]
    if not distributed.is_main():  # rank 0 evaluates and writes the run
        distributed.finish()
        return {"model": model_name, "rank": rank}
    metrics = _metrics(model_name, model, result, train, val, test, cfg,
                       n_records=len(records), n_skipped=report.skipped,
                       n_users=len(pairs.users), embed_seconds=t_embed)

    run = {
        "data": [str(Path(p).resolve()) for p in paths],
        "fields": dataclasses.asdict(fields),
        "embed_model": embed_model,
        "item_dim": projection.out_dim if projection is not None else None,
        "identity_items": len(emb.identity.keys) if emb.identity is not None else 0,
        "model": model_name,
        "model_options": model_options or {},
        "train_config": dataclasses.asdict(cfg),
        "test_users": test_users,
        "heldout_pairs": heldout_pairs,
    }
    _write_run_dir(Path(out), model, emb, split, run, metrics, extra=adapters)
    distributed.finish()
    return metrics


def _metrics(model_name: str, model: RewardModel, result: TrainResult, train: PairData,
             val: PairData, test: PairData, cfg: TrainConfig, **counts: Any) -> dict[str, Any]:
    """A run's metrics.json: what training did, `counts`, and `run_metrics`."""
    metrics: dict[str, Any] = {
        "model": model_name, "context_size": cfg.context_size, **counts,
        "n_train_pairs": len(train), "best_epoch": result.best_epoch,
        "train_seconds": result.seconds, "train_pairs_per_second": result.pairs_per_second,
        "after_fit": result.after_fit,
    }
    metrics.update(run_metrics(model, train, val, test, cfg))
    metrics["history"] = result.history
    return metrics


def train_store_run(store: str | os.PathLike, model_name: str, out: str | os.PathLike, *,
                    train_config: TrainConfig | None = None,
                    model_options: dict[str, Any] | None = None, test_users: float = 0.2,
                    heldout_pairs: float = 0.2, progress: bool = True,
                    logger: Logger | None = None) -> dict[str, Any]:
    """`train_run` on a memory-mapped store (`vpl.data.store`): the item vectors stay on disk,
    split by user with `split_indices`; the run records the store and its split (unseen users
    by name, held-out pairs as `#INDEX` of the store), and is written atomically by rank 0."""
    from vpl.data.split import split_indices
    from vpl.data.store import open_store, store_info

    cfg = train_config or TrainConfig()
    distributed.setup()
    data = open_store(store)
    idx = split_indices(data, test_users=test_users, heldout_pairs=heldout_pairs, seed=cfg.seed)
    train, val, test = (data.subset(i) for i in idx)
    registry_name, options = resolve(model_name, **(model_options or {}))
    seed_everything(cfg.seed)
    model = build_for(registry_name, train, **options)
    result = fit(model, train, val if len(val) else None, cfg, progress=progress, logger=logger)
    if not distributed.is_main():
        distributed.finish()
        return {"model": model_name, "rank": distributed.rank_and_world()[0]}
    metrics = _metrics(model_name, model, result, train, val, test, cfg,
                       n_records=len(data), n_users=len(data.users))
    info = store_info(store)
    run = {"store": str(Path(store).resolve()), "embed_model": info.get("embed_model", ""),
           "item_dim": None, "identity_items": 0, "model": model_name,
           "model_options": model_options or {}, "train_config": dataclasses.asdict(cfg),
           "test_users": test_users, "heldout_pairs": heldout_pairs}
    split = Split(seed=cfg.seed, test_users=sorted({data.users[u] for u in data.user[idx[2]]}),
                  heldout_pairs=[f"#{i}" for i in idx[1]])
    emb = Embedded({"train": train, "val": val, "test": test}, [data], None, None)
    _write_run_dir(Path(out), model, emb, split, run, metrics)
    distributed.finish()
    return metrics


def _finetuned(records: Sequence[Comparison], parts: dict[str, tuple[int, Sequence[Comparison]]],
               embed_model: str, registry_name: str, options: dict[str, Any],
               cfg: TrainConfig, lora: LoRAConfig, progress: bool
               ) -> tuple[RewardModel, TrainResult, Embedded, Callable[[Path], object]]:
    """A model trained with a LoRA-tuned backbone: (model, result, the re-embedded splits,
    a writer of the adapters into a run directory)."""
    from vpl.embed.causal import CausalLMEncoder, is_causal
    from vpl.embed.encoder import index_comparisons
    from vpl.train.finetune import finetune_then_fit, save_adapters

    if not is_causal(embed_model):
        raise ValueError(f"--finetune lora needs a causal-LM backbone (--embed-model smollm2 or "
                         f"causal:PATH), not {embed_model!r}")
    texts, every = index_comparisons(list(records))
    train, val = (pick(every, records, parts[k][1]) for k in ("train", "val"))
    encoder = CausalLMEncoder(embed_model, cache=False, progress=progress)
    width = 2 * int(encoder.model.config.hidden_size)
    seed_everything(cfg.seed)
    shape = dataclasses.replace(train, items=np.zeros((len(texts), width), dtype=np.float32),
                                _by_user=None)
    model = build_for(registry_name, shape, **options)
    result, train_v, _ = finetune_then_fit(model, encoder, texts, train,
                                           val if len(val) else None, cfg, lora,
                                           progress=progress)
    every_v = dataclasses.replace(every, items=train_v.items, _by_user=None)
    emb = Embedded({k: pick(every_v, records, recs) for k, (_, recs) in parts.items()},
                   [every_v], None, None)
    return model, result, emb, lambda d: save_adapters(encoder, d)
