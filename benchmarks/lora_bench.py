"""Relabeled HH-RLHF with a LoRA-fine-tuned causal-LM backbone (`vpl.train.finetune`) against
the same backbone frozen: accuracy on the held-out pairs of its two users at K=8.

Splits as `vpl bench --suite hh` makes them (20 % of each user's pairs held out, 10 % of the
rest for validation, per seed). Each seed trains the model twice from the same start: with the
backbone frozen, and with LoRA adapters trained through the model's loss first.

Usage: python benchmarks/lora_bench.py --hh-data DIR [--embed-model smollm2#mean@-6]
       [--models btl vpl] [--seeds 0 1 2] [--lora-epochs 2] [--out benchmarks/results/lora.md]
Meant for a GPU (the backbone is in the training loop); on a CPU use a tiny model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from vpl.data.io import atomic_write_text
from vpl.data.split import make_split
from vpl.embed.causal import CausalLMEncoder
from vpl.embed.encoder import index_comparisons
from vpl.evaluate import evaluate_pairs
from vpl.experiments.prepare import _hh_records, _with_types
from vpl.experiments.report import git_commit
from vpl.models import build_for
from vpl.train import TrainConfig, fit
from vpl.train.finetune import LoRAConfig, finetune_then_fit, reembed


def splits(path: Path, seed: int):
    """(items, train, val, test) PairData over one item index, as the hh suite splits."""
    train_all, test_rec = _hh_records(path, seed)
    tr, va, _ = make_split(train_all, test_users=0.0, heldout_pairs=0.1, seed=seed).partition(
        train_all)
    pairs, data = index_comparisons(tr + va + test_rec)
    data = _with_types(data)
    cut = np.cumsum([len(tr), len(va)])
    idx = np.arange(len(data))
    return (pairs, data.subset(idx[: cut[0]]), data.subset(idx[cut[0] : cut[1]]),
            data.subset(idx[cut[1] :]))


def run(args: argparse.Namespace, model_name: str, seed: int, tuned: bool) -> dict:
    pairs, train, val, test = splits(Path(args.hh_data), seed)
    enc = CausalLMEncoder(args.embed_model, cache=False, progress=False,
                          max_tokens=args.max_tokens)
    cfg = TrainConfig(seed=seed, context_size=8)
    t0 = time.perf_counter()
    if tuned:
        probe = dataclasses.replace(train, items=np.zeros((len(pairs), 2 * _width(enc)),
                                                          dtype=np.float32), _by_user=None)
        torch.manual_seed(seed)
        model = build_for(model_name, probe)
        res, train_v, val_v = finetune_then_fit(
            model, enc, pairs, train, val, cfg,
            LoRAConfig(epochs=args.lora_epochs, r=args.rank), progress=False)
        test_v = dataclasses.replace(test, items=train_v.items, _by_user=None)
    else:
        everything = reembed(enc, pairs, train)
        train_v = everything
        val_v = dataclasses.replace(val, items=everything.items, _by_user=None)
        test_v = dataclasses.replace(test, items=everything.items, _by_user=None)
        torch.manual_seed(seed)
        model = build_for(model_name, train_v)
        res = fit(model, train_v, val_v, cfg, progress=False)
    acc = evaluate_pairs(model, test_v, train_v, context_size=8, seed=seed).accuracy
    return {"model": model_name, "seed": seed, "lora": tuned, "accuracy": float(acc),
            "seconds": time.perf_counter() - t0,
            "lora_loss": {k: v for k, v in res.after_fit.items() if k.startswith("lora_loss")}}


def _width(enc: CausalLMEncoder) -> int:
    return int(enc.model.config.hidden_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hh-data", required=True)
    ap.add_argument("--embed-model", default="smollm2#mean@-6")
    ap.add_argument("--models", nargs="+", default=["btl", "vpl"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--lora-epochs", type=int, default=2)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--out", default="benchmarks/results/lora.md")
    args = ap.parse_args()
    rows = []
    for m in args.models:
        for seed in args.seeds:
            for tuned in (False, True):
                rows.append(run(args, m, seed, tuned))
                print(json.dumps(rows[-1]), flush=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    lines = ["# Relabeled HH-RLHF: LoRA-fine-tuned vs frozen backbone", "",
             f"`python benchmarks/lora_bench.py --embed-model {args.embed_model} --models "
             f"{' '.join(args.models)} --seeds {' '.join(map(str, args.seeds))} --lora-epochs "
             f"{args.lora_epochs} --rank {args.rank} --max-tokens {args.max_tokens}`, commit "
             f"`{git_commit()}`, {device}. Accuracy on held-out pairs of the two users, K=8.",
             "", "| model | backbone | accuracy per seed | mean | seconds per run |",
             "|---|---|---|---|---|"]
    for m in args.models:
        for tuned in (False, True):
            rs = [r for r in rows if r["model"] == m and r["lora"] == tuned]
            accs = [r["accuracy"] for r in rs]
            lines.append(f"| {m} | {'LoRA-tuned' if tuned else 'frozen'} | "
                         f"{' / '.join(f'{a:.3f}' for a in accs)} | {np.mean(accs):.3f} | "
                         f"{np.mean([r['seconds'] for r in rs]):.0f} |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out, text)
    atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(rows, indent=1))
    print(text)


if __name__ == "__main__":
    main()
