"""How many users and target pairs a training step holds, chosen on held-out *training* users
of the real sets (never their test users).

For each real set of `vpl bench --suite real` (UKPConvArg, Jester; relabeled HH when its folder
is there) this trains the default `vpl` on 80% of the set's training users and scores the other
20% at K=8, all pairs and item-disjoint pairs, contexts from each user's own pairs as the suite's
test does. HH's test pairs are held-out pairs of its training users, so there 15% of the
training pairs are held out instead and their contexts come from the rest. Each seed draws its
own held-out users and trains with its own seed; the configurations share the draws.

Configurations (`TrainConfig` fields): A 8 users x 8 targets (the default until 2026-12-05),
B 16 users x 8 targets (the default since, for models that read a context), C B with lr
1.4e-3 (the square-root rule), D 8 users x 16 targets (as good here, but it failed the model
comparison on the test users; docs/models.md, `TrainConfig.users_per_batch`).

Usage: python benchmarks/group_size_bench.py [--configs A B C D] [--seeds 3] [--hh-seeds 6]
       [--jobs 2] [--out benchmarks/results/group-size.md]
Needs the real data (`$VPL_DATA_DIR`); a set that is absent is skipped.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from vpl.data.io import atomic_write_text
from vpl.experiments.report import git_commit

CONFIGS: dict[str, dict[str, Any]] = {
    "A": {"users_per_batch": 8, "targets_per_user": 8},
    "B": {"users_per_batch": 16, "targets_per_user": 8},
    "C": {"users_per_batch": 16, "targets_per_user": 8, "lr": 1.4e-3},
    "D": {"users_per_batch": 8, "targets_per_user": 16},
}
DATASETS = ("ukpconvarg", "jester", "hh-relabeled")


@functools.cache
def _prepared(dataset: str) -> Any:
    """The set as `vpl bench` prepares it (seed 0), once per worker process."""
    from vpl.experiments.prepare import prepare
    from vpl.experiments.suites import SUITES

    spec = next(d for d in SUITES["real"].datasets if d.name == dataset)
    return prepare(spec, seed=0, progress=False)


def run(dataset: str, config: str, seed: int) -> dict[str, Any] | None:
    """Train on the kept training users (pairs, for HH) and score the held-out ones."""
    from vpl.evaluate import evaluate_pairs
    from vpl.models import build_for
    from vpl.train import TrainConfig, fit, seed_everything

    prep = _prepared(dataset)
    if prep is None:
        return None
    rng = np.random.default_rng(100 + seed)
    train, val = prep.train, prep.val
    if prep.test_pool_is_train:  # HH: held-out pairs of the training users
        held = rng.random(len(train)) < 0.15
        kept_val = val
    else:
        users = np.unique(train.user)
        out = rng.permutation(users)[: int(round(0.2 * len(users)))]
        held = np.isin(train.user, out)
        kept_val = val.subset(np.flatnonzero(~np.isin(val.user, out)))
    kept, scored = train.subset(np.flatnonzero(~held)), train.subset(np.flatnonzero(held))
    pool = kept if prep.test_pool_is_train else None
    seed_everything(seed)
    model = build_for("vpl", kept)
    t0 = time.perf_counter()
    res = fit(model, kept, kept_val, TrainConfig(seed=seed, **CONFIGS[config]), progress=False)
    s = evaluate_pairs(model, scored, pool, context_size=8, seed=seed).summary()
    return {"dataset": dataset, "config": config, "seed": seed, "accuracy": s["accuracy"],
            "accuracy_item_disjoint": s["accuracy_item_disjoint"],
            "best_epoch": res.best_epoch, "epochs": len(res.history),
            "seconds": time.perf_counter() - t0, "pairs_per_second": res.pairs_per_second,
            "scored_pairs": len(scored)}


def _star(args: tuple[str, str, int]) -> dict[str, Any] | None:
    return run(*args)


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def render(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "Mean over seeds, ± its standard error; training pairs/s of the loop "
             "(the machine shared by two jobs).", "",
             "| set | config | seeds | K=8 all pairs | K=8 item-disjoint | best epochs | "
             "pairs/s |", "|---|---|---|---|---|---|---|"]
    for ds in DATASETS:
        for c in CONFIGS:
            rs = [r for r in rows if r["dataset"] == ds and r["config"] == c]
            if not rs:
                continue
            a = np.array([r["accuracy"] for r in rs])
            d = np.array([r["accuracy_item_disjoint"] for r in rs])
            opts = ", ".join(f"{k}={v}" for k, v in CONFIGS[c].items())
            lines.append(f"| {ds} | {c} ({opts}) | {len(rs)} | {a.mean():.4f} ± {_se(a):.4f} | "
                         f"{d.mean():.4f} ± {_se(d):.4f} | "
                         f"{', '.join(str(r['best_epoch']) for r in rs)} | "
                         f"{np.mean([r['pairs_per_second'] for r in rs]):,.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--hh-seeds", type=int, default=6, help="HH is small: more seeds")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/group-size.md")
    args = ap.parse_args()
    jobs = [(ds, c, s) for c in args.configs for ds in args.datasets
            for s in range(args.hh_seeds if ds == "hh-relabeled" else args.seeds)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = [r for r in pool.map(_star, jobs) if r is not None]
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(rows, indent=1))
    cmd = (f"python benchmarks/group_size_bench.py --configs {' '.join(args.configs)} "
           f"--seeds {args.seeds} --hh-seeds {args.hh_seeds} --jobs {args.jobs}")
    header = (f"# Training step size chosen on held-out training users\n\n`{cmd}` at commit "
              f"{git_commit()}, {time.perf_counter() - t0:.0f} s. The default `vpl` on 80% of "
              "each real set's training users (HH: 85% of its training pairs), scored on the "
              "rest at K=8; the test users are not read.")
    text = render(rows, header)
    atomic_write_text(out, text)
    print(text)


if __name__ == "__main__":
    main()
