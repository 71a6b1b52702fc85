"""Active query selection on Personas: random vs info-gain (BALD) vs EPIG vs the paper's criterion.

For each population (4 user types, continuous weights) and each seed, trains a model (VPL by
default, or any latent-variable model of the registry: `--model low-rank`) on the training
users, then simulates every unseen user: queries come from the user's pool, the
data's labels answer them, and accuracy on the user's held-out pairs is recorded after each
answer. The pool is the user's own recorded pairs (`--pool own`, 24 per user) or 1,000 pairs
drawn from all unseen users' pairs, answered from the user's declared weights (`--pool
shared`: a simulated user can answer any comparison). Prints a markdown table and writes it
to benchmarks/results/active.md.

    .venv/bin/python benchmarks/active_bench.py [--seeds 3] [--budget 16] [--model vpl]
        [--pool own|shared]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vpl.active import mean_ci, queries_to_reach, run_active, time_selection
from vpl.active.acquisition import STRATEGIES
from vpl.cli import parse_options
from vpl.data.pairs import PairData
from vpl.data.schema import Comparison
from vpl.models import build
from vpl.train import TrainConfig, fit, seed_everything

log = logging.getLogger("active_bench")
OUT = Path(__file__).parent / "results" / "active.md"


def _records(rows: list[dict]) -> list[Comparison]:
    return [Comparison(r["user_id"], r["prompt"], r["chosen"], r["rejected"],
                       meta={"user_type": r.get("user_type")}) for r in rows]


def load_personas(users: str, seed: int, cache_dir: str | None = None
                  ) -> tuple[PairData, PairData]:
    """(train users' pairs, unseen users' pairs), embedded with the bundled sentence encoder.

    With `cache_dir`, the embedded arrays are saved there and reused by later runs.
    """
    from vpl.data.personas import generate_personas
    from vpl.embed import SentenceEncoder, embed_comparisons

    cached = Path(cache_dir) / f"personas-{users}-{seed}.npz" if cache_dir else None
    if cached is not None and cached.exists():
        z = np.load(cached, allow_pickle=False)
        data = PairData(items=z["items"], user=z["user"], chosen=z["chosen"],
                        rejected=z["rejected"], users=z["users"].tolist(),
                        item_keys=z["item_keys"], user_types=z["user_types"].tolist())
        n_train = int(z["n_train"])
    else:
        train_rows, test_rows = generate_personas(users=users, seed=seed)
        records = _records(train_rows) + _records(test_rows)
        data = embed_comparisons(records, SentenceEncoder(progress=True))
        n_train = len(train_rows)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cached, items=data.items, user=data.user, chosen=data.chosen,
                     rejected=data.rejected, users=np.array(data.users),
                     item_keys=data.item_keys, n_train=n_train,
                     user_types=np.array([t or "" for t in data.user_types or []]))
    return (data.subset(np.arange(n_train)), data.subset(np.arange(n_train, len(data))))


def persona_oracle(users: str, seed: int, test: PairData) -> Callable[[int], np.ndarray]:
    """The simulated unseen users of `load_personas(users, seed)`: oracle(u) is user u's utility
    margin (chosen minus rejected, 0 for ties) of every pair of `test`, from the generator's
    declared user weights and response attributes (the generator is deterministic, so the
    records are regenerated rather than cached)."""
    from vpl.data.personas import _TIE_TOL, ATTRIBUTES, generate_personas

    _, rows = generate_personas(users=users, seed=seed)
    if len(rows) != len(test):
        raise ValueError(f"personas-{users}: {len(rows)} generated test records, "
                         f"{len(test)} pairs in the data")
    levels = np.array([[r["chosen_attributes"][a] - r["rejected_attributes"][a]
                        for a in ATTRIBUTES] for r in rows], dtype=np.float64)  # (P, A)
    weights = {r["user_id"]: np.array(r["user_weights"], dtype=np.float64) for r in rows}

    def oracle(u: int) -> np.ndarray:
        m = levels @ weights[test.users[u]]
        return np.where(np.abs(m) < _TIE_TOL, 0.0, m)

    # alignment check: every recorded pair is labeled as its own user's weights say
    own = np.array([levels[p] @ weights[test.users[test.user[p]]] for p in range(len(test))])
    if (own < -_TIE_TOL).any():
        raise ValueError(f"personas-{users}: regenerated records do not match the cached pairs")
    return oracle


def holdout(train: PairData, frac: float, seed: int) -> tuple[PairData, PairData]:
    """Split each training user's pairs into (fit, validation) for early stopping."""
    rng = np.random.default_rng(seed)
    val = []
    for idx in train.by_user().values():
        val.extend(rng.choice(idx, size=max(1, int(frac * len(idx))), replace=False).tolist())
    mask = np.zeros(len(train), dtype=bool)
    mask[val] = True
    return train.subset(np.flatnonzero(~mask)), train.subset(np.flatnonzero(mask))


def _fmt_ci(values: np.ndarray) -> str:
    lo, hi = mean_ci(values)
    return f"{values.mean():.3f} ± {(hi - lo) / 2:.3f}"


def bench_population(users: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one model per seed and run every strategy; returns curves and summaries."""
    t0 = time.perf_counter()
    train_all, test = load_personas(users, seed=0, cache_dir=args.data_cache)
    log.info("personas-%s: %d train pairs, %d test pairs, %d unseen users (%.0fs embedding)",
             users, len(train_all), len(test), len(test.by_user()), time.perf_counter() - t0)
    oracle = persona_oracle(users, 0, test) if args.pool == "shared" else None
    strategies = args.strategies
    per_user: dict[str, list[np.ndarray]] = {s: [] for s in strategies}
    entropy_corr: dict[str, list[float]] = {s: [] for s in strategies}
    pred_corr: dict[str, list[float]] = {s: [] for s in strategies}
    timing: dict[str, list[float]] = {s: [] for s in strategies}
    val_acc = []
    for seed in range(args.seeds):
        fit_set, val = holdout(train_all, 0.1, seed)
        seed_everything(seed)  # the weight initialization is part of the seeded run
        model = build(args.model, train_all.dim, **parse_options(args.option))
        cfg = TrainConfig(epochs=args.epochs, context_size=args.context_size, seed=seed,
                          patience=args.patience)
        res = fit(model, fit_set, val, cfg, progress=True)
        val_acc.append(res.best_val_accuracy)
        log.info("seed %d: trained in %.0fs, best val accuracy %.3f (epoch %d)", seed,
                 res.seconds, res.best_val_accuracy, res.best_epoch)
        for strategy in strategies:
            r = run_active(model, test, strategy, budget=args.budget, batch=args.batch,
                           eval_pairs=args.eval_pairs, seed=seed, samples=args.samples,
                           progress=True, oracle=oracle,
                           pool_size=args.pool_size if oracle is not None else None)
            per_user[strategy].append(r.accuracy)
            summary = r.to_dict()
            entropy_corr[strategy].append(summary["entropy_accuracy_spearman"])
            pred_corr[strategy].append(summary["predictive_entropy_accuracy_spearman"])
            log.info("seed %d %-9s curve %s", seed, strategy,
                     " ".join(f"{v:.3f}" for v in r.curve))
            if seed == 0:
                timing[strategy].append(time_selection(model, test, strategy, pool_size=1000,
                                                       samples=args.samples, seed=seed))
    return {"users": users, "per_user": {s: np.stack(v) for s, v in per_user.items()},
            "entropy_corr": entropy_corr, "pred_corr": pred_corr, "timing": timing,
            "val_acc": val_acc}


def inference_note(args: argparse.Namespace) -> str:
    """How the posterior after n answers is inferred and what info-gain averages over."""
    opts = parse_options(args.option)
    model = build(args.model, 2, **opts)
    inference = getattr(model, "inference", None) or getattr(model.config, "inference", "")
    if inference == "bank":
        return ("Posterior after n answers: the latent bank (the training users' latents "
                "reweighted by the likelihood of the answers); info-gain: BALD over the "
                "weighted bank latents, re-weighted after every answer; epig: expected "
                "information gain about the labels of the user's other pool pairs, over the "
                "same weighted latents;")
    if inference == "map":
        return ("Posterior after n answers: the Laplace approximation at the MAP user weights "
                "under the population Gaussian prior; info-gain: BALD with "
                f"{args.samples} draws from it (full covariance), re-fitted after every answer; "
                "epig: expected information gain about the labels of the user's other pool "
                "pairs, over the same draws;")
    return (f"Posterior after n answers: the amortized encoder; info-gain: BALD with "
            f"{args.samples} posterior samples, re-encoding after every answer;")


def pool_note(args: argparse.Namespace) -> str:
    """Where a simulated user's queries come from."""
    if args.pool == "shared":
        return (f"{args.eval_pairs} of each unseen user's 40 pairs are held out for evaluation; "
                f"the query pool is {args.pool_size} pairs drawn per user from all unseen "
                f"users' pairs (none sharing a response with the evaluation pairs, none the "
                f"user is indifferent about), answered from the user's declared weights "
                f"(`--pool shared`);")
    return (f"each unseen user's 40 pairs are split into {args.eval_pairs} evaluation pairs and "
            f"a query pool of the rest (item-disjoint);")


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown tables of the benchmark."""
    ref = min(8, args.budget)
    opts = "".join(f" --option {o}" for o in args.option)
    config = ", ".join(args.option) or "default config"
    lines = [
        "# Active query selection (Personas)",
        "",
        f"`{args.model}` ({config}) trained per seed on the training users (context size up to "
        f"{args.context_size}); {args.seeds} seeds; {pool_note(args)} "
        f"accuracy on the evaluation pairs with z = posterior mean after n answers. "
        f"Mean ± 95% CI over unseen users of the seed-averaged accuracy. "
        f"{inference_note(args)} "
        f"paper: our reading of the VPL paper's variance criterion (whole budget chosen "
        f"once, labels weighted uniformly). Command: `.venv/bin/python benchmarks/active_bench.py "
        f"--model {args.model} --seeds {args.seeds} --budget {args.budget} --epochs {args.epochs} "
        f"--patience {args.patience} --populations {args.populations} "
        f"{'--pool shared --pool-size ' + str(args.pool_size) + ' ' if args.pool == 'shared' else ''}"
        f"--strategies {' '.join(args.strategies)}{opts}`, commit "
        f"`{getattr(args, 'commit', 'unknown')}`; wall time {args.wall:.0f} s on this machine "
        f"(training and every strategy, one process).",
        "",
    ]
    for res in results:
        pu = res["per_user"]  # strategy -> (seeds, U, budget + 1)
        curves = {s: v.mean(0) for s, v in pu.items()}  # (U, budget + 1), seed-averaged
        ns = [n for n in (0, 1, 2, 3, 4, 6, 8, 12, 16) if n <= args.budget]
        lines += [f"## personas-{res['users']}", "",
                  f"Validation accuracy of the trained models (seen users, K<= context): "
                  f"{np.mean(res['val_acc']):.3f}", "",
                  "| strategy | " + " | ".join(f"n={n}" for n in ns) + " |",
                  "|---|" + "---|" * len(ns)]
        for s in args.strategies:
            lines.append(f"| {s} | " + " | ".join(_fmt_ci(curves[s][:, n]) for n in ns) + " |")
        target = curves["random"][:, ref].mean()
        lines += ["", f"Queries needed to reach random's accuracy after {ref} queries "
                  f"({target:.3f}); mean curve, and per seed:", "",
                  "| strategy | queries (mean curve) | per seed | selection ms (1,000 "
                  "candidates) | Spearman(posterior entropy, accuracy) | Spearman(predictive "
                  "entropy, accuracy) |", "|---|---|---|---|---|---|"]
        for s in args.strategies:
            need = queries_to_reach(curves[s].mean(0), target)
            per_seed = [queries_to_reach(pu[s][k].mean(0), pu["random"][k][:, ref].mean())
                        for k in range(len(pu[s]))]
            ms = res["timing"][s]
            corr = np.nanmean(res["entropy_corr"][s])
            pcorr = np.nanmean(res["pred_corr"][s])
            lines.append(f"| {s} | {'>' + str(args.budget) if need is None else need} | "
                         f"{per_seed} | {np.mean(ms):.1f} | {corr:+.3f} | {pcorr:+.3f} |")
        lines.append("")
    lines += ["Spearman(posterior entropy, accuracy): correlation across unseen users of the "
              "posterior entropy H[q(z | answers)] and the accuracy, computed separately for each "
              "number of answers n = 1..budget and averaged (negative: more uncertain users are "
              "less accurate). Spearman(predictive entropy, accuracy): the same with the user's "
              "mean predictive entropy H[p(y | answers)] over their evaluation pairs (computed "
              "from posterior samples, no labels). Selection time: median wall time of one "
              "`next_query()` from a pool of 1,000 candidate pairs with 4 answers, torch "
              f"threads = {torch.get_num_threads()}.",
              ""]
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and write the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vpl",
                   help="registry name of the latent-variable model to train (vpl, low-rank)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=TrainConfig().patience)
    p.add_argument("--context-size", type=int, default=16)
    p.add_argument("--eval-pairs", type=int, default=16)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--populations", default="4,continuous")
    p.add_argument("--pool", choices=("own", "shared"), default="own",
                   help="own: a user is asked their own recorded pairs (24 per user); shared: "
                        "a simulated user answers any of the unseen users' pairs, from their "
                        "declared weights (--pool-size candidates per user)")
    p.add_argument("--pool-size", type=int, default=1000)
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES),
                   help="which strategies to run (random is always run: it sets the target)")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--data-cache", default=None,
                   help="directory to keep the embedded data in between runs")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override, e.g. --option beta=0.01 (repeatable)")
    args = p.parse_args()
    args.strategies = ["random"] + [s for s in args.strategies if s != "random"]
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from vpl.experiments.report import git_commit

    args.commit = git_commit()  # before any output is written
    t0 = time.perf_counter()
    results = [bench_population(u, args) for u in args.populations.split(",")]
    args.wall = time.perf_counter() - t0
    text = report(results, args)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    raw = {r["users"]: {s: v.mean(0).mean(0).tolist() for s, v in r["per_user"].items()}
           for r in results}
    out.with_suffix(".json").write_text(json.dumps(raw, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
