"""Active query selection in the maze: policy success vs number of answered queries.

For each seed: one control run (maze data, VPL reward model, z-conditioned IQL policy; the
same code as `vpl control run`), then new simulated users per goal answer queries from a pool
of state pairs chosen by random / info-gain / epig / paper (`--strategies`), and the policy is rolled out with
z = posterior mean after 0..budget answers. Prints a markdown table and writes it to --out.

    .venv/bin/python benchmarks/active_maze_bench.py [--seeds 0 1 2] [--budget 16] [--jobs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from vpl.active.acquisition import STRATEGIES

OUT = Path(__file__).parent / "results" / "active_maze.md"


def _one(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Control run + every strategy for one seed; success (U, budget + 1) per strategy."""
    import torch

    from vpl.active.maze import run_maze_active
    from vpl.checkpoint import load_model
    from vpl.control import offline
    from vpl.control.policy import IQLSettings, load_policy
    from vpl.control.run import ControlConfig, run_control

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.workdir) / f"seed{seed}"
    t0 = time.perf_counter()
    cfg = ControlConfig(goals=args.goals, seed=seed, plots=False,
                        iql=dataclasses.replace(IQLSettings(), steps=args.iql_steps,
                                                eval_every=0))
    res = run_control([args.reward], work, cfg, progress=False)[args.reward]
    t_control = time.perf_counter() - t0
    model, policy = load_model(work / "reward_model"), load_policy(work / "policy")
    data = offline.load(work / "data")
    out: dict[str, Any] = {"seed": seed, "control_success": res["success_rate"],
                           "identification": res["identification"],
                           "t_control": t_control, "success": {}, "entropy_corr": {},
                           "select_ms": {}}
    for s in args.strategies:
        r = run_maze_active(model, policy, data, s, budget=args.budget,
                            users_per_goal=args.users_per_goal, pool_size=args.pool,
                            episodes=args.episodes, seed=seed, progress=False)
        d = r.to_dict()
        out["success"][s] = r.accuracy.tolist()
        out["entropy_corr"][s] = d["entropy_accuracy_spearman"]
        out["select_ms"][s] = d["select_ms_median"]
    out["t_total"] = time.perf_counter() - t0
    return out


def _ci(v: np.ndarray) -> str:
    from vpl.active import mean_ci

    lo, hi = mean_ci(v)
    return f"{100 * v.mean():.1f} ± {100 * (hi - lo) / 2:.1f}"


def report(runs: list[dict[str, Any]], args: argparse.Namespace, wall: float,
           commit: str = "unknown") -> str:
    """Markdown: success after n answers (mean ± 95% CI over users of seed-averaged success)."""
    from vpl.active import queries_to_reach

    ns = [n for n in (0, 1, 2, 3, 4, 6, 8, 12, 16) if n <= args.budget]
    strategies = list(runs[0]["success"])
    succ = {s: np.mean([np.asarray(r["success"][s]) for r in runs], axis=0) for s in strategies}
    seeds = [r["seed"] for r in runs]
    control = ", ".join(f"{100 * r['control_success']:.0f}%" for r in runs)
    lines = [
        f"## Maze: success vs answered queries ({args.goals} goals, reward `{args.reward}`)", "",
        f"Command: `python benchmarks/active_maze_bench.py --goals {args.goals} --seeds "
        f"{' '.join(map(str, seeds))} --budget {args.budget} --iql-steps {args.iql_steps} "
        f"--strategies {' '.join(strategies)}`; "
        f"commit {commit}; "
        f"wall time {wall:.0f} s with {args.jobs} job(s). Per seed: one control run "
        f"(`vpl control run` defaults, {args.iql_steps} IQL steps; success with the data's "
        f"8 random test queries: "
        f"{control}), then "
        f"{args.users_per_goal} new users per goal, each with a pool of {args.pool} state-pair "
        f"queries labeled by their goal (the data's 5% label noise), {args.episodes} episodes "
        f"per user from fixed start states. Success % after n answers, mean ± 95% CI over users "
        f"of the seed-averaged success.", "",
        "| strategy | " + " | ".join(f"n={n}" for n in ns) + " | Spearman(entropy, success) "
        "| selection ms |",
        "|---|" + "---|" * (len(ns) + 2)]
    for s in strategies:
        corr = np.nanmean([r["entropy_corr"][s] for r in runs])
        ms = np.mean([r["select_ms"][s] for r in runs])
        lines.append(f"| {s} | " + " | ".join(_ci(succ[s][:, n]) for n in ns)
                     + f" | {corr:+.2f} | {ms:.1f} |")
    ref = min(8, args.budget)
    target = succ["random"][:, ref].mean()
    need = {s: queries_to_reach(succ[s].mean(0), target) for s in strategies}
    lines += ["", f"Answers needed to reach random's success after {ref} "
              f"({100 * target:.1f}%): " + ", ".join(
                  f"{s} {'>' + str(args.budget) if v is None else v}" for s, v in need.items())
              + ".", ""]
    idents = [r["identification"] for r in runs if r.get("identification")]
    if idents:
        from vpl.control.run import mean_identification

        ident = mean_identification(idents)
        exp = ident["expected"]
        lines += [f"The Bayes classifier on the true rewards names a user's goal from "
                  f"{ident['queries']} random queries for "
                  + ", ".join(f"{n} {100 * v:.0f}%" for n, v in exp.items())
                  + f" of users (mean {100 * np.mean(list(exp.values())):.1f}%): the "
                  "information in random queries, whatever the model.", ""]
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and write the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--goals", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--reward", default="vpl-spo")
    p.add_argument("--budget", type=int, default=16)
    p.add_argument("--users-per-goal", type=int, default=20)
    p.add_argument("--pool", type=int, default=256)
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--iql-steps", type=int, default=None, help="default: IQLSettings.steps")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES),
                   help="which strategies to run (random is always run: it sets the target)")
    p.add_argument("--workdir", default="/tmp/vpl_active_maze")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    args.strategies = ["random"] + [s for s in args.strategies if s != "random"]
    if args.iql_steps is None:
        from vpl.control.policy import IQLSettings

        args.iql_steps = IQLSettings.steps
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from vpl.experiments.report import git_commit

    commit = git_commit()  # before any output is written
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        runs = list(ex.map(_one, args.seeds, [args] * len(args.seeds)))
    text = report(runs, args, time.perf_counter() - t0, commit)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(runs, indent=2), encoding="utf-8")
    _plot(runs, out.with_suffix(".png"))


def _plot(runs: list[dict[str, Any]], path: Path) -> None:
    from vpl.active import mean_ci
    from vpl.active.cli import plot_curves

    curves = {}
    for s in runs[0]["success"]:
        per_user = np.mean([np.asarray(r["success"][s]) for r in runs], axis=0)
        lo, hi = mean_ci(per_user)
        curves[s] = {"curve": per_user.mean(0).tolist(), "ci95": [lo.tolist(), hi.tolist()]}
    plot_curves(curves, path, ylabel="success rate")


if __name__ == "__main__":
    main()
