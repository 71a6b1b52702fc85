"""Where `fit`'s time goes for the default `vpl` with every phase after the training loop: the
epochs, then the latent bank's refinement, the choice of the bank temperature and the choice
of item effects (`vpl.train.callbacks`), and the evaluation of the test pairs.

Data: `scale_bench`'s synthetic store (two user types over D-dimensional items, P / 10 users),
split as `vpl train` splits (20% unseen users, 20% held-out pairs of the others; seed 0). Each
phase is timed by wrapping its callback. Embedding excluded; one process.

Usage: python benchmarks/phases_bench.py [--pairs 100000] [--dim 768] [--epochs 1]
       [--out benchmarks/results/phases.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vpl.data.io import atomic_write_text
from vpl.experiments.report import git_commit


def measure(store: Path, epochs: int) -> dict:
    """Seconds of each phase of `fit` (and of evaluating the test pairs), and the accuracy."""
    import torch

    from vpl.data.split import split_indices
    from vpl.data.store import open_store
    from vpl.evaluate import evaluate_pairs
    from vpl.models import build_for
    from vpl.train import TrainConfig, callbacks_for, fit

    data = open_store(store)
    train, val, test = (data.subset(i) for i in split_indices(data, test_users=0.2,
                                                              heldout_pairs=0.2, seed=0))
    torch.manual_seed(0)
    model = build_for("vpl", train)
    seconds: dict[str, float] = {}

    def timed(name: str, run):
        def phase(*args, **kwargs):
            t0 = time.perf_counter()
            out = run(*args, **kwargs)
            seconds[name] = time.perf_counter() - t0
            return out
        return phase

    callbacks = callbacks_for(model)
    for cb in callbacks:
        cb.on_fit_end = timed(type(cb).__name__, cb.on_fit_end)
    t0 = time.perf_counter()
    res = fit(model, train, val, TrainConfig(epochs=epochs), progress=False,
              callbacks=callbacks)
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = evaluate_pairs(model, test, context_size=8).accuracy
    return {"pairs": len(data), "train_pairs": len(train), "epochs": len(res.history),
            "fit_s": total, "loop_s": total - sum(seconds.values()), "phases_s": seconds,
            "test_eval_s": time.perf_counter() - t0, "test_pairs": len(test),
            "accuracy": acc}


def report(r: dict, dim: int) -> str:
    lines = ["# Where `fit`'s time goes (default `vpl`, every phase)", "",
             f"`python benchmarks/phases_bench.py --pairs {r['pairs']} --dim {dim} --epochs "
             f"{r['epochs']}` at commit {git_commit()}, one process. {r['train_pairs']:,} "
             f"training pairs of `scale_bench`'s synthetic store; {r['test_pairs']:,} test pairs "
             "(unseen users, K=8).", "", "| phase | seconds |", "|---|---|",
             f"| training loop ({r['epochs']} epoch(s), with validation) and the rest of fit | "
             f"{r['loop_s']:.1f} |"]
    lines += [f"| {name} | {s:.1f} |" for name, s in r["phases_s"].items()]
    lines += [f"| **fit, in all** | **{r['fit_s']:.1f}** |",
              f"| evaluating the test pairs | {r['test_eval_s']:.1f} |", "",
              f"Test accuracy at K=8: {r['accuracy']:.4f}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/phases.md")
    args = ap.parse_args()
    from scale_bench import make_store

    with tempfile.TemporaryDirectory(prefix="vpl-phases-") as work:
        r = measure(make_store(Path(work) / "store", args.pairs, args.dim), args.epochs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, report(r, args.dim))
    print(out.read_text())


if __name__ == "__main__":
    main()
