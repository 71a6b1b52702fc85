"""Core benchmark: the numbers of the README's first table.

- Pets (full, controversial): BTL and VPL with default flags, accuracy on the test file
  (unseen users and unseen sentences, K=8 context pairs of the same user).
- Relabeled HH-RLHF (../shared/data, skipped when absent): BTL and VPL, two users
  (objectives), held-out pairs, accuracy for K in {0, 4, 8, 16}.
- Speed: VPL training pairs/s at K=8; embedding sentences/s cold vs cached, with the default
  encoder (`vpl.embed.DEFAULT_ENCODER`).

Usage: python benchmarks/core_bench.py [--out benchmarks/results/core.md] [--skip-hh]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from vpl.checkpoint import load_model
from vpl.data.io import write_jsonl
from vpl.data.pets import generate_pets
from vpl.embed import DEFAULT_ENCODER, EmbeddingCache, SentenceEncoder
from vpl.evaluate import evaluate_pairs
from vpl.experiments.prepare import load_pairs
from vpl.experiments.report import git_commit
from vpl.experiments.runs import train_run

HH = Path(os.environ.get("VPL_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
          ) / "relabeled_hh_rlhf"
"""Real data: `$VPL_DATA_DIR`, else `../shared/data` beside this checkout."""


def pets_table(work: Path) -> list[str]:
    """Pets accuracy on the test file for BTL and VPL, both variants."""
    rows = ["| Pets variant | model | test accuracy (K=8) | item-disjoint | active units |",
            "|---|---|---|---|---|"]
    for variant in ("controversial", "full"):
        train, test = generate_pets(variant, seed=0)
        write_jsonl(work / variant / "train.jsonl", train)
        write_jsonl(work / variant / "test.jsonl", test)
        for model in ("btl", "vpl"):
            run = work / variant / model
            m = train_run(work / variant / "train.jsonl", model, run, progress=False)
            data = load_pairs(work / variant / "test.jsonl", run, progress=False)
            s = evaluate_pairs(load_model(run), data, context_size=8)
            units = m.get("latent", {}).get("active_units", "-")
            rows.append(f"| {variant} | {model} | {s.accuracy:.3f} | "
                        f"{s.accuracy_item_disjoint:.3f} | {units} |")
    return rows


def hh_table(work: Path) -> list[str]:
    """Relabeled HH-RLHF: held-out pairs, accuracy at each K."""
    rows = ["| model | K=0 | K=4 | K=8 | K=16 | active units |", "|---|---|---|---|---|---|"]
    from vpl.data.io import FieldMap

    for model in ("btl", "vpl"):
        m = train_run(HH, model, work / f"hh-{model}", fields=FieldMap(user="objective"),
                      on_error="skip", progress=False)
        curve = m["few_shot_seen_users"]
        units = m.get("latent", {}).get("active_units", "-")
        rows.append(f"| {model} | " + " | ".join(f"{curve[k]['accuracy']:.3f}"
                                                 for k in ("0", "4", "8", "16")) + f" | {units} |")
    return rows


def speed_table(work: Path) -> list[str]:
    """VPL training throughput and embedding throughput, cold and cached."""
    train, _ = generate_pets("full", seed=1)
    write_jsonl(work / "speed.jsonl", train)
    m = train_run(work / "speed.jsonl", "vpl", work / "speed-vpl", progress=False)
    texts = sorted({r["chosen"] for r in train} | {r["rejected"] for r in train})
    cache = EmbeddingCache(work / "speed-cache.sqlite")
    enc = SentenceEncoder(DEFAULT_ENCODER, cache=cache, progress=False)
    enc.encode(["warm up the model"])
    t = time.perf_counter()
    enc.encode(texts)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    enc.encode(texts)
    warm = time.perf_counter() - t
    return ["| measure | value |", "|---|---|",
            f"| VPL training, K=8 (pairs/s, optimizer steps only) | "
            f"{m['train_pairs_per_second']:,.0f} |",
            f"| embedding {len(texts)} Pets sentences, cold (sentences/s) | "
            f"{len(texts) / cold:,.0f} |",
            f"| same, from the disk cache (sentences/s) | {len(texts) / warm:,.0f} |"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/core.md")
    ap.add_argument("--skip-hh", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        parts = [f"Measured on commit `{git_commit()}`, 2 CPU cores, default encoder "
                 f"`{DEFAULT_ENCODER}` (items projected as `vpl train` does).", "",
                 *pets_table(work), ""]
        if HH.exists() and not args.skip_hh:
            parts += ["Relabeled HH-RLHF (two objectives as users, held-out pairs):", "",
                      *hh_table(work), ""]
        else:
            parts += ["Relabeled HH-RLHF: skipped (../shared/data absent or --skip-hh).", ""]
        parts += speed_table(work)
        parts += ["", f"Total benchmark time: {time.perf_counter() - t0:.0f}s"]
    text = "\n".join(parts)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
