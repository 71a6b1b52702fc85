"""`vpl active`: simulate active query selection for the unseen users of a data file."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from vpl.active.acquisition import STRATEGIES
from vpl.data.pairs import PairData

log = logging.getLogger(__name__)

RESULTS = "active.json"
PLOT = "active_curves.png"


def add_active_command(subparsers: argparse._SubParsersAction) -> None:
    """Register the `active` subcommand on the main CLI's subparsers."""
    a = subparsers.add_parser(
        "active", help="active query selection for new users: accuracy after each query",
        description="For each unseen user, pick comparisons from the user's query pool with a "
        "strategy, answer them with the data's labels, and record accuracy on the user's "
        "held-out evaluation pairs after every answer.")
    a.add_argument("--run", required=True,
                   help="run directory of a trained latent model (`vpl train`), or of a maze "
                   "control run (`vpl control run`, holding policy/ and reward_model/): then "
                   "success of the z-conditioned policy is recorded instead of accuracy")
    a.add_argument("--data", default=None,
                   help="comparisons of the users to simulate; if the run's split.json lists "
                   "unseen users present in the file, only those are used. For a maze run: the "
                   "maze data folder (default: the run's data/ or ../data/)")
    a.add_argument("--store", default=None,
                   help="a memory-mapped store (vpl data store) instead of --data, for a text "
                   "model run: the item vectors stay on disk")
    a.add_argument("--strategy", choices=STRATEGIES, default="info-gain")
    a.add_argument("--budget", type=int, default=8, help="queries per user")
    a.add_argument("--batch", type=int, default=1, help="queries chosen at a time")
    a.add_argument("--pool", type=int, default=None,
                   help="candidate pool size per user (default: every pair not evaluated on)")
    a.add_argument("--eval-pairs", type=int, default=16, help="evaluation pairs per user")
    a.add_argument("--samples", type=int, default=16,
                   help="posterior samples for info-gain and epig with the amortized "
                        "posterior (antithetic pairs)")
    a.add_argument("--users-per-goal", type=int, default=10,
                   help="maze: new simulated users per goal")
    a.add_argument("--episodes", type=int, default=4,
                   help="maze: evaluation episodes per user and number of answers")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", default=None, help="output directory (default: RUN_DIR/active)")
    a.add_argument("--json", action="store_true", help="print JSON (key `curve`)")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=cmd_active)


def _unseen_users(run_dir: Path, data: PairData) -> list[int]:
    """User indices to simulate: the run's unseen users if the file has any, else all."""
    from vpl.experiments.prepare import unseen_users

    everyone = sorted(data.by_user())
    unseen = unseen_users(data, run_dir)
    if unseen is None:
        return everyone
    if len(unseen):
        return sorted(set(everyone).intersection(unseen.tolist()))
    log.warning("%s: none of the file's users is an unseen user of the run; using all %d",
                run_dir / "split.json", len(everyone))
    return everyone


def save_results(out: Path, strategy: str, result: dict[str, Any],
                 ylabel: str = "accuracy on held-out pairs") -> dict[str, Any]:
    """Merge one strategy's result into `out/active.json` and replot every stored curve."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS
    stored: dict[str, Any] = {"strategies": {}}
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            log.warning("%s: unreadable, starting a new results file", path)
    stored.setdefault("strategies", {})[strategy] = result
    from vpl.data.io import atomic_write_text

    atomic_write_text(path, json.dumps(stored, indent=2))
    plot_curves(stored["strategies"], out / PLOT, ylabel)
    return stored


def plot_curves(strategies: dict[str, dict[str, Any]], path: Path,
                ylabel: str = "accuracy on held-out pairs") -> None:
    """Mean curve with 95% CI band of every strategy."""
    from vpl.experiments.report import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, res in sorted(strategies.items()):
        y = np.asarray(res["curve"])
        x = np.arange(len(y))
        ax.plot(x, y, marker="o", ms=3, label=name)
        if "ci95" in res:
            ax.fill_between(x, res["ci95"][0], res["ci95"][1], alpha=0.2)
    ax.set_xlabel("queries answered")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _maze_data_dir(run_dir: Path, given: str | None) -> Path:
    if given:
        return Path(given)
    for cand in (run_dir / "data", run_dir.parent / "data"):
        if (cand / "meta.json").exists():
            return cand
    raise FileNotFoundError(f"{run_dir}: no maze data found in {run_dir / 'data'} or "
                            f"{run_dir.parent / 'data'}; pass --data DIR")


def _run_maze(run_dir: Path, args: argparse.Namespace) -> Any:
    from vpl.active.maze import run_maze_active
    from vpl.checkpoint import load_model
    from vpl.control import offline
    from vpl.control.policy import load_policy

    model = load_model(run_dir / "reward_model")
    policy = load_policy(run_dir / "policy")
    data = offline.load(_maze_data_dir(run_dir, args.data))
    if model.input_dim != data.maze.feature_dim:
        raise ValueError(f"{run_dir}: the reward model expects {model.input_dim} state features "
                         f"but the maze data has {data.maze.feature_dim}")
    return run_maze_active(model, policy, data, args.strategy, budget=args.budget,
                           users_per_goal=args.users_per_goal, pool_size=args.pool or 256,
                           episodes=args.episodes, samples=args.samples, batch=args.batch,
                           seed=args.seed, progress=not args.quiet)


def cmd_active(args: argparse.Namespace) -> int:
    """Run one strategy over the unseen users, print and save the curves."""
    from vpl.active.session import run_active
    from vpl.checkpoint import load_model
    from vpl.experiments.prepare import check_item_dim, load_pairs, open_store_for_run

    run_dir = Path(args.run)
    if (run_dir / "policy" / "policy.json").exists():
        if args.store:
            raise ValueError("--store holds text comparisons; a maze run reads --data")
        res = _run_maze(run_dir, args)
    else:
        if bool(args.data) == bool(args.store):
            raise ValueError("a text model run needs --data or --store (one of them)")
        model = load_model(run_dir)
        if args.store:
            data = open_store_for_run(args.store, run_dir)
        else:
            data = load_pairs(args.data, str(run_dir), progress=not args.quiet)
        check_item_dim(data, model.input_dim, args.store or args.data, run_dir)
        users = _unseen_users(run_dir, data)
        res = run_active(model, data, args.strategy, budget=args.budget, batch=args.batch,
                         pool_size=args.pool, eval_pairs=args.eval_pairs, seed=args.seed,
                         samples=args.samples, users=users, progress=not args.quiet)
    summary = res.to_dict()
    metric = res.config.get("metric", "accuracy")
    out = Path(args.out) if args.out else run_dir / "active"
    save_results(out, args.strategy, summary,
                 ylabel="success rate" if metric == "success" else "accuracy on held-out pairs")
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "per_user"}))
        return 0
    n = res.accuracy.shape[1]
    width = max(len(u) for u in res.users)
    print(f"{args.strategy}: {metric} after 0..{n - 1} queries ({len(res.users)} users)")
    print(" " * width + "".join(f"{i:>6d}" for i in range(n)))
    for u, row in zip(res.users, res.accuracy, strict=True):
        print(u.ljust(width) + "".join(f"{v:6.2f}" for v in row))
    lo, hi = summary["ci95"]
    print("mean".ljust(width) + "".join(f"{v:6.3f}" for v in summary["curve"]))
    print("ci95".ljust(width) + "".join(f" ±{(h - lo_) / 2:.2f}" for lo_, h in zip(lo, hi,
                                                                                 strict=True)))
    pred = summary.get("predictive_entropy_accuracy_spearman")
    pred_txt = "" if pred is None else f"; predictive entropy vs {metric}: {pred:+.3f}"
    print(f"posterior entropy vs {metric} (Spearman, per n, mean): "
          f"{summary['entropy_accuracy_spearman']:+.3f}{pred_txt}; median selection "
          f"{summary['select_ms_median']:.1f} ms")
    print(f"saved {out / RESULTS} and {out / PLOT}")
    return 0
