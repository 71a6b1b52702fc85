"""`vpl demo`: Pets end to end — generate, embed, train BTL and VPL, print accuracies."""

from __future__ import annotations

import json
import time
from pathlib import Path

from vpl.checkpoint import load_model
from vpl.data.io import atomic_write_text, write_jsonl
from vpl.evaluate import evaluate_pairs
from vpl.experiments.prepare import load_pairs
from vpl.experiments.runs import train_run
from vpl.train import TrainConfig

DEMO_MODELS = ("btl", "vpl")
DEMO_VARIANTS = ("full", "controversial")


def run_demo(out: str | Path = "runs/demo", *, seed: int = 0, epochs: int | None = None,
             context_size: int = 8, progress: bool = True) -> list[dict]:
    """Run the demo and print a table; returns its rows (also saved as `OUT/demo.json`)."""
    from vpl.data.pets import generate_pets

    out = Path(out)
    rows = []
    t_start = time.perf_counter()
    cfg = TrainConfig(seed=seed, context_size=context_size,
                      **({"epochs": epochs} if epochs is not None else {}))
    for variant in DEMO_VARIANTS:
        train_records, test_records = generate_pets(variant, seed=seed)
        vdir = out / variant
        write_jsonl(vdir / "train.jsonl", train_records)
        write_jsonl(vdir / "test.jsonl", test_records)
        test_pairs = None
        for name in DEMO_MODELS:
            run_dir = vdir / name
            m = train_run(vdir / "train.jsonl", name, run_dir, train_config=cfg,
                          progress=progress)
            if test_pairs is None:
                test_pairs = load_pairs(vdir / "test.jsonl", run_dir, progress=progress)
            s = evaluate_pairs(load_model(run_dir), test_pairs, context_size=context_size,
                               seed=seed)
            rows.append({
                "variant": variant, "model": name,
                "seen_users_heldout": m.get("accuracy_seen_users"),
                "unseen_users": m.get("accuracy_unseen_users"),
                "test_file": s.accuracy,
                "test_file_item_disjoint": s.accuracy_item_disjoint,
                "active_units": m.get("latent", {}).get("active_units"),
                "train_seconds": m["train_seconds"],
            })
    total = time.perf_counter() - t_start
    print(f"\nPets, K={context_size} context pairs, accuracy (seed {seed}, {total:.0f}s total)\n")
    print("| variant | model | seen users, held-out pairs | unseen users | test file: new users "
          "+ new sentences | item-disjoint | active latent units |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        au = "-" if r["active_units"] is None else str(r["active_units"])
        print(f"| {r['variant']} | {r['model']} | {r['seen_users_heldout']:.3f} | "
              f"{r['unseen_users']:.3f} | {r['test_file']:.3f} | "
              f"{r['test_file_item_disjoint']:.3f} | {au} |")
    atomic_write_text(out / "demo.json", json.dumps({"rows": rows, "seconds": total}, indent=2))
    return rows
