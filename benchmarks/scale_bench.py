"""How training and evaluation cost grows with the number of comparisons, on the memory-mapped
store (`vpl.data.store`), in one process and in two (torchrun, gloo).

Data: synthetic users of two types over random D-dimensional items (embedding excluded): item
x = A f + noise for 8 latent factors f, and a user of type t prefers the item with the larger
w_t . f. Per size P: U = P / 10 users (100 at least), N = P / 10 items, written to a store in
blocks (never held in memory whole). Each measurement runs in a fresh process that opens the
store and trains the default `vpl` for one epoch (`vpl.train.fit`; batch building included;
no phases after the loop), fills the latent bank (shared out over the processes), then
scores every pair with K=8 contexts through the bank (`evaluate_pairs`, one process). The
phases that choose how far to personalize are left out: they score at most
`vpl.train.temper.MAX_HELD_OUT` held-out users and the bank holds at most `bank_size`
latents, so their cost stops growing with the data. Peak resident memory is the measuring
process's (rank 0's with two processes).

Usage: python benchmarks/scale_bench.py [--sizes 10000 100000 1000000] [--dim 768]
       [--procs 1 2] [--out benchmarks/results/scale.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vpl.data.io import atomic_write_text
from vpl.data.store import open_store, write_arrays
from vpl.experiments.report import git_commit

FACTORS = 8
BLOCK = 20_000


def make_store(out: Path, pairs: int, dim: int, seed: int = 0) -> Path:
    """A synthetic store of `pairs` comparisons (see the module docstring)."""
    rng = np.random.default_rng(seed)
    # the two types' weights come first, so every size has the same users (drawn after the
    # items, they changed with the number of items: the types agreed on 60%, 41% and 71% of
    # pairs at 10^4, 10^5 and 10^6)
    w = rng.normal(size=(2, FACTORS))
    users, n_items = max(100, pairs // 10), max(100, pairs // 10)
    f = rng.normal(size=(n_items, FACTORS)).astype(np.float32)
    a = rng.normal(size=(FACTORS, dim)).astype(np.float32) / np.sqrt(FACTORS)
    user = np.sort(rng.integers(0, users, pairs))
    i, j = rng.integers(0, n_items, pairs), rng.integers(0, n_items, pairs)
    better = np.einsum("pf,pf->p", f[i] - f[j], w[user % 2]) > 0

    def rows():
        for s in range(0, n_items, BLOCK):
            block = f[s : s + BLOCK] @ a
            yield block + 0.1 * rng.normal(size=block.shape).astype(np.float32)

    return write_arrays(out, user, np.where(better, i, j), np.where(better, j, i),
                        [f"u{k}" for k in range(users)], rows())


def measure(store: Path, epochs: int, evaluate: bool) -> dict:
    """Train (and evaluate) on a store in this process (rank 0 of several under torchrun)."""
    import torch

    from vpl import distributed
    from vpl.evaluate import evaluate_pairs
    from vpl.models import build_for
    from vpl.train import TrainConfig, fit
    from vpl.train.refine import fill_bank

    data = open_store(store)
    torch.manual_seed(0)
    model = build_for("vpl", data)
    res = fit(model, data, None, TrainConfig(epochs=epochs), progress=False, callbacks=[])
    out = {"pairs": len(data), "users": len(data.users), "items": len(data.items),
           "train_pairs_per_s": res.pairs_per_second,
           "epoch_s": len(data) / res.pairs_per_second}
    t0 = time.perf_counter()
    fill_bank(model, data, 8)
    out["bank_s"] = time.perf_counter() - t0
    if evaluate:
        t0 = time.perf_counter()
        acc = evaluate_pairs(model, data, context_size=8).accuracy
        out.update(eval_s=time.perf_counter() - t0, accuracy=acc)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    distributed.finish()
    return out


def run_measure(store: Path, procs: int, epochs: int) -> dict:
    """`measure` in a fresh process (or `procs` under torchrun, without evaluation); its JSON
    result."""
    script = [str(Path(__file__).resolve()), "--measure", str(store), "--epochs", str(epochs),
              *(["--evaluate"] if procs == 1 else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if procs == 1:
        cmd = [sys.executable, *script]
    else:
        cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone",
               "--nproc-per-node", str(procs), *script]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("{"))
    return json.loads(line)


def loglog_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for procs in sorted({r["procs"] for r in rows}):
        sub = [r for r in rows if r["procs"] == procs]
        x = [r["pairs"] for r in sub]
        ax.loglog(x, [r["epoch_s"] for r in sub], "o-", label=f"epoch, {procs} proc")
        if procs == 1:
            ax.loglog(x, [r["eval_s"] for r in sub], "s--", label="evaluation, 1 proc")
    x0 = min(r["pairs"] for r in rows)
    first = next(r for r in rows if r["pairs"] == x0 and r["procs"] == 1)
    xs = np.array(sorted({r["pairs"] for r in rows}))
    ax.loglog(xs, first["epoch_s"] * xs / x0, ":", color="gray", label="linear")
    ax.set_xlabel("comparisons")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(rows: list[dict], dim: int, seconds: float) -> str:
    ones = sorted((r for r in rows if r["procs"] == 1), key=lambda r: r["pairs"])
    lines = [f"# Scaling: cost against the number of comparisons (D={dim})", "",
             f"`python benchmarks/scale_bench.py --sizes {' '.join(str(r['pairs']) for r in ones)}"
             f" --dim {dim}` at commit {git_commit()}, {seconds / 60:.1f} min on 2 cores. "
             "Embedding excluded; one epoch of the default `vpl` at K=8 on the memory-mapped "
             "store; evaluation scores every pair.", "",
             "| comparisons | users | items | procs | train pairs/s | epoch s | bank s | "
             "eval s | eval pairs/s | accuracy | peak RSS MB | store MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["pairs"], r["procs"])):
        ev = r.get("eval_s")
        lines.append(
            f"| {r['pairs']:,} | {r['users']:,} | {r['items']:,} | {r['procs']} | "
            f"{r['train_pairs_per_s']:,.0f} | {r['epoch_s']:.1f} | {r['bank_s']:.1f} | "
            + (f"{ev:.1f} | {r['pairs'] / ev:,.0f} | {r['accuracy']:.3f}" if ev else "- | - | -")
            + f" | {r['peak_rss_mb']:,.0f} | {r['store_mb']:,.0f} |")
    lo, hi = ones[0], ones[-1]
    scale = hi["pairs"] / lo["pairs"]
    lines += ["", f"From {lo['pairs']:,} to {hi['pairs']:,} comparisons ({scale:,.0f}x): "
              f"epoch time x{hi['epoch_s'] / lo['epoch_s']:,.0f} "
              f"({hi['epoch_s'] / lo['epoch_s'] / scale:.2f} of linear), evaluation time "
              f"x{hi['eval_s'] / lo['eval_s']:,.0f} "
              f"({hi['eval_s'] / lo['eval_s'] / scale:.2f} of linear). Target: within 1.3 of "
              "linear; peak memory at 10^6 below 2 GB.", ""]
    for a, b in zip(ones, ones[1:], strict=False):
        k = b["pairs"] / a["pairs"]
        lines.append(f"- {a['pairs']:,} to {b['pairs']:,}: epoch x{b['epoch_s'] / a['epoch_s']:.1f}"
                     f" ({b['epoch_s'] / a['epoch_s'] / k:.2f} of linear), evaluation "
                     f"x{b['eval_s'] / a['eval_s']:.1f} ({b['eval_s'] / a['eval_s'] / k:.2f} of "
                     "linear).")
    lines += ["", "Evaluation scores each pair against every latent of the bank, which holds "
              "one latent per training user up to `bank_size` (2,048): its cost per pair grows "
              "with the bank until the bank is full, then stays.", "", "![cost](scale.png)", ""]
    for r in ones:
        two = next((t for t in rows if t["procs"] == 2 and t["pairs"] == r["pairs"]), None)
        if two:
            lines.append(f"- {r['pairs']:,}: 2 processes train at "
                         f"{two['train_pairs_per_s'] / r['train_pairs_per_s']:.2f}x the pairs/s "
                         "of one.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/scale.md")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    ap.add_argument("--evaluate", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        result = measure(Path(args.measure), args.epochs, args.evaluate)
        if os.environ.get("RANK", "0") == "0":  # one line, from rank 0
            print(json.dumps(result), flush=True)
        return
    t0 = time.perf_counter()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="vpl-scale-"))
    try:
        for size in args.sizes:
            store = make_store(work / f"s{size}", size, args.dim)
            mb = sum(f.stat().st_size for f in store.iterdir()) / 2**20
            for procs in args.procs:
                r = {**run_measure(store, procs, args.epochs), "procs": procs, "store_mb": mb}
                print(json.dumps(r), flush=True)
                rows.append(r)
            shutil.rmtree(store)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = write_report(rows, args.dim, time.perf_counter() - t0, Path(args.out))
    print(out.read_text())


def write_report(rows: list[dict], dim: int, seconds: float, out: Path) -> Path:
    """The report at `out` and its plot beside it (the folder made if missing)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = report(rows, dim, seconds)  # before the plot changes a tracked file (the commit)
    loglog_plot(rows, out.with_suffix(".png"))
    atomic_write_text(out, text)
    return out


if __name__ == "__main__":
    main()
