"""Maze control benchmark: success of z-conditioned IQL policies under each reward model.

For every goal count and seed, `vpl.control.run_control` generates the offline data, trains
the reward models (BTL, DPL if registered, VPL shared by its three scalings), relabels the data,
trains one IQL policy per reward choice plus the oracle, and evaluates success per goal. Prints
a markdown table (mean +- std over seeds, ratio to the oracle), writes it to --out, and plots
success against IQL steps.

    python benchmarks/control_bench.py --out benchmarks/results/control.md
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

DEFAULT_REWARDS = ["oracle", "btl", "dpl", "vpl", "vpl-minmax", "vpl-spo"]


def _one(goals: int, seed: int, rewards: list[str], steps: int, eval_every: int,
         workdir: str, reward_kw: dict[str, Any], hidden: int = 0) -> dict[str, Any]:
    """Run every reward choice for one (goals, seed); returns results and wall time."""
    import torch

    from vpl.control.policy import IQLSettings
    from vpl.control.rewards import RewardConfig
    from vpl.control.run import ControlConfig, run_control

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    cfg = ControlConfig(goals=goals, seed=seed,
                        iql=dataclasses.replace(IQLSettings(), steps=steps, eval_every=eval_every,
                                                hidden=hidden),
                        reward=RewardConfig(**reward_kw))
    t0 = time.perf_counter()
    res = run_control(rewards, Path(workdir) / f"goals{goals}" / f"seed{seed}", cfg,
                      progress=False)
    return {"goals": goals, "seed": seed, "results": res, "wall": time.perf_counter() - t0}


def _fmt(vals: list[float]) -> str:
    return f"{100 * np.mean(vals):.1f} ± {100 * np.std(vals):.1f}"


def table(runs: list[dict[str, Any]], goals: int, rewards: list[str]) -> str:
    """Markdown table of one goal count: success mean +- std over seeds and ratio to oracle."""
    rs = [r for r in runs if r["goals"] == goals]
    seeds = sorted(r["seed"] for r in rs)
    oracle = [r["results"]["oracle"]["success_rate"] for r in rs if "oracle" in r["results"]]
    o_mean = float(np.mean(oracle)) if oracle else float("nan")
    names = list(next(iter(rs[0]["results"].values()))["per_goal"])
    head = ("| reward | scaling | success % | / oracle | " + " | ".join(f"goal {n} %" for n in names)
            + " | reward val acc | reward corr |")
    lines = [f"### {goals} goals (seeds {seeds})", "", head,
             "|" + "---|" * (6 + len(names))]
    for rw in rewards:
        got = [r["results"][rw] for r in rs if rw in r["results"]]
        if not got:
            continue
        sr = [g["success_rate"] for g in got]
        per = [_fmt([g["per_goal"][n] for g in got]) for n in names]
        acc = [g["reward_model"].get("val_accuracy", float("nan")) for g in got]
        corr = [np.mean(list(g["reward_correlation"].values())) if g["reward_correlation"]
                else float("nan") for g in got]
        ratio = np.mean(sr) / o_mean if o_mean > 0 else float("nan")
        acc_s = "—" if np.isnan(acc).all() else f"{np.nanmean(acc):.3f}"
        corr_s = "—" if np.isnan(corr).all() else f"{np.nanmean(corr):.2f}"
        ratio_s = "—" if np.isnan(ratio) else f"{ratio:.2f}"
        lines.append(f"| {rw} | {got[0]['scaling']} | {_fmt(sr)} | {ratio_s} | "
                     + " | ".join(per) + f" | {acc_s} | {corr_s} |")
    idents = [next(iter(r["results"].values())).get("identification") for r in rs]
    if all(idents) and idents:
        from vpl.control.run import mean_identification

        ident = mean_identification(idents)
        exp, test = ident["expected"], ident["test_users"]
        mean_exp = float(np.mean(list(exp.values())))
        ceiling = (f"; with the oracle's success that bounds a policy given the user by those "
                   f"queries at about {100 * mean_exp * o_mean:.1f}% ({mean_exp:.2f} of the "
                   "oracle)") if oracle else ""
        lines += ["", f"Identifiable from {ident['queries']} random queries (the Bayes "
                  "classifier on the true rewards and flip rate, mean over seeds): expected "
                  + ", ".join(f"{n} {100 * v:.0f}%" for n, v in exp.items())
                  + f" (mean {100 * mean_exp:.1f}%); this data's test users "
                  + ", ".join(f"{n} {100 * v:.0f}%" for n, v in test.items()) + ceiling + "."]
    walls = [r["wall"] for r in rs]
    pol = [np.mean([v["seconds"]["policy"] for v in r["results"].values()]) for r in rs]
    first = next(iter(rs[0]["results"].values()))
    steps = first["iql_steps"]  # the same for every reward
    width = first.get("config", {}).get("iql", {}).get("hidden", "?")
    lines += ["", f"IQL steps per policy: {steps} (networks {width} wide); wall time "
              f"per seed (data + reward models + {len(rs[0]['results'])} policies + evaluation): "
              f"{np.mean(walls):.0f} s (min {np.min(walls):.0f}, max {np.max(walls):.0f}); "
              f"mean IQL training time per policy {np.mean(pol):.0f} s.", ""]
    return "\n".join(lines)


def plot_curves(runs: list[dict[str, Any]], rewards: list[str], path: Path) -> None:
    """Success rate against IQL steps (mean over seeds), one panel per goal count."""
    from vpl.experiments.report import pyplot

    plt = pyplot()

    goal_counts = sorted({r["goals"] for r in runs})
    fig, axes = plt.subplots(1, len(goal_counts), figsize=(5.5 * len(goal_counts), 4),
                             squeeze=False)
    for ax, g in zip(axes[0], goal_counts, strict=True):
        rs = [r for r in runs if r["goals"] == g]
        for rw in rewards:
            curves = [r["results"][rw]["curve"] for r in rs if rw in r["results"]]
            if not curves:
                continue
            steps = [c["step"] for c in curves[0]]
            vals = np.array([[c["success_rate"] for c in cv] for cv in curves])
            m, s = vals.mean(0), vals.std(0)
            color = f"C{(DEFAULT_REWARDS + rewards).index(rw)}"  # same colour in every panel
            ax.plot(steps, m, marker="o", label=rw, color=color)
            ax.fill_between(steps, m - s, m + s, alpha=0.15, color=color)
        ax.set_title(f"{g} goals")
        ax.set_xlabel("IQL gradient steps")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    """Parse flags, run every (goals, seed), print and write the tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--goals", type=int, nargs="+", default=[2, 4])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rewards", nargs="+", default=DEFAULT_REWARDS)
    p.add_argument("--rewards-many", nargs="+", default=None,
                   help="reward choices for goal counts > 2 (default: --rewards)")
    p.add_argument("--iql-steps", type=int, default=None, help="default: IQLSettings.steps")
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--iql-hidden", type=int, default=0,
                   help="IQL network width (0: IQLSettings.for_goals, 64 per goal, >= 128)")
    p.add_argument("--vpl-variant", default=None, choices=("concat", "default"),
                   help="VPL configuration of the reward model (RewardConfig.vpl_variant)")
    p.add_argument("--vpl-inference", default=None, choices=("amortized", "bank"),
                   help="how VPL infers a user's latent (RewardConfig.inference)")
    p.add_argument("--label-noise", type=float, default=None,
                   help="VPL's label-noise rate (RewardConfig.label_noise)")
    p.add_argument("--jobs", type=int, default=2, help="(goals, seed) runs in parallel")
    p.add_argument("--workdir", default="runs/control_bench")
    p.add_argument("--out", default="benchmarks/results/control.md")
    p.add_argument("--plot", default=None, help="default: next to --out, *_curve.png")
    args = p.parse_args()

    from vpl.control.policy import IQLSettings
    from vpl.experiments.report import git_commit
    from vpl.models import REGISTRY

    commit = git_commit()  # before any output is written

    def usable(names: list[str]) -> list[str]:
        keep = [r for r in names if r != "dpl" or "dpl-meanvar" in REGISTRY]
        if len(keep) < len(names):
            print("dpl skipped: model 'dpl-meanvar' is not registered")
        return keep

    rewards = usable(args.rewards)
    many = usable(args.rewards_many) if args.rewards_many else rewards
    steps = args.iql_steps or IQLSettings.steps
    jobs = [(g, s) for g in args.goals for s in args.seeds]
    # flags given on the command line override RewardConfig's defaults
    flags = {"vpl_variant": ("--vpl-variant", args.vpl_variant),
             "inference": ("--vpl-inference", args.vpl_inference),
             "label_noise": ("--label-noise", args.label_noise)}
    reward_kw = {k: v for k, (_, v) in flags.items() if v is not None}
    given = "".join(f" {flag} {v}" for flag, v in flags.values() if v is not None)
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futs = [pool.submit(_one, g, s, rewards if g <= 2 else many, steps, args.eval_every,
                            args.workdir, reward_kw, args.iql_hidden)
                for g, s in jobs]
        for f in futs:
            r = f.result()
            runs.append(r)
            sr = {k: round(v["success_rate"], 3) for k, v in r["results"].items()}
            print(f"goals={r['goals']} seed={r['seed']} wall={r['wall']:.0f}s {sr}", flush=True)
    total = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot = Path(args.plot) if args.plot else out.with_name(out.stem + "_curve.png")
    plot_curves(runs, rewards, plot)
    text = "\n".join([
        "## Maze control (VPL paper's maze experiment, D4RL maze2d-large layout)", "",
        f"Command: `python benchmarks/control_bench.py --goals {' '.join(map(str, args.goals))} "
        f"--seeds {' '.join(map(str, args.seeds))} --jobs {args.jobs}"
        + (f" --rewards {' '.join(rewards)}" if rewards != DEFAULT_REWARDS else "")
        + (f" --rewards-many {' '.join(many)}" if args.rewards_many else "")
        + given + (f" --iql-hidden {args.iql_hidden}" if args.iql_hidden else "")
        + f"`; commit {commit}; IQL steps {steps} ({IQLSettings.n_step}-step targets); "
        f"total wall time {total:.0f} s with {args.jobs} parallel job(s) on this machine.", "",
        *[table(runs, g, rewards) for g in args.goals],
        f"Success vs IQL steps: `{plot.name}`.", ""])
    print(text)
    out.write_text(text, encoding="utf-8")
    (Path(args.workdir) / "runs.json").write_text(json.dumps(
        [{"goals": r["goals"], "seed": r["seed"], "wall": r["wall"],
          "results": {k: {kk: vv for kk, vv in v.items() if kk != "config"}
                      for k, v in r["results"].items()}} for r in runs], indent=1),
        encoding="utf-8")


if __name__ == "__main__":
    main()
