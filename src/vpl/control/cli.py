"""Command line for the control experiment: `vpl control run` and `vpl data maze`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from vpl.control.offline import MazeDataConfig
from vpl.control.policy import LATENT_SCALES, IQLSettings
from vpl.control.rewards import REWARDS, SCALINGS, VPL_VARIANTS, RewardConfig
from vpl.control.run import ControlConfig

CHOICES = sorted(REWARDS)


def add_maze_data_parser(data_subparsers: argparse._SubParsersAction) -> None:
    """Register `maze` under `vpl data`: exploration data + simulated users into --out."""
    p = data_subparsers.add_parser("maze", help="generate offline maze data and preference sets")
    p.add_argument("--goals", type=int, default=2, help="number of goals (user types)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--noise", type=float, default=MazeDataConfig.noise,
                   help="probability that a label is flipped")
    p.add_argument("--layout", default="large", help="maze layout (large, medium, umaze)")
    p.add_argument("--episodes", type=int, default=MazeDataConfig.episodes,
                   help="exploration episodes")
    p.add_argument("--users-per-goal", type=int, default=MazeDataConfig.train_users_per_goal,
                   help="training users per goal")
    p.set_defaults(func=_cmd_data_maze)


def _cmd_data_maze(args: argparse.Namespace) -> int:
    from vpl.control.offline import make_maze_data

    path = make_maze_data(args.goals, args.out, seed=args.seed, noise=args.noise,
                          layout=args.layout, episodes=args.episodes,
                          train_users_per_goal=args.users_per_goal)
    print(f"wrote maze data to {path}")
    return 0


def add_control_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `control` with its `run` subcommand under the main parser's subparsers."""
    ctl = subparsers.add_parser("control", help="maze control experiment (offline RL)")
    sub = ctl.add_subparsers(dest="control_command", required=True)
    p = sub.add_parser("run", help="learn a reward, train an IQL policy, evaluate success")
    p.add_argument("--goals", type=int, default=2, help="number of goals (user types)")
    p.add_argument("--reward", required=True, choices=CHOICES, help="reward model")
    p.add_argument("--out", required=True, help="output folder (results.json, plots, policy)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--data", default=None, help="maze data folder from `vpl data maze`")
    p.add_argument("--scaling", default="auto", choices=("auto", *SCALINGS),
                   help="reward scaling (auto: the reward's default)")
    p.add_argument("--noise", type=float, default=MazeDataConfig.noise,
                   help="label noise when data is generated")
    p.add_argument("--iql-steps", type=int, default=IQLSettings.steps, help="IQL gradient steps")
    p.add_argument("--eval-every", type=int, default=IQLSettings.eval_every,
                   help="IQL steps between success evaluations (0: only at the end)")
    p.add_argument("--reward-epochs", type=int, default=RewardConfig.epochs,
                   help="maximum reward-model epochs")
    p.add_argument("--vpl-inference", default=RewardConfig.inference,
                   choices=("amortized", "bank"),
                   help="how VPL infers a user's latent from their labeled queries")
    p.add_argument("--label-noise", type=float, default=RewardConfig.label_noise,
                   help="VPL's assumed rate of flipped labels (0: plain Bradley-Terry)")
    p.add_argument("--vpl-variant", default=RewardConfig.vpl_variant, choices=VPL_VARIANTS,
                   help="VPL configuration: default (z sets a per-user reward head) or concat "
                        "(the paper's: z concatenated to the state)")
    p.add_argument("--iql-hidden", type=int, default=IQLSettings.hidden,
                   help="width of the IQL networks (0: 64 per goal, at least 128)")
    p.add_argument("--latent-scale", default=IQLSettings.latent_scale, choices=LATENT_SCALES,
                   help="how the policy sees z: whiten (principal components at unit variance), "
                        "global (one common scale) or per-dim")
    p.add_argument("--episodes", type=int, default=MazeDataConfig.episodes,
                   help="exploration episodes when data is generated")
    p.add_argument("--users-per-goal", type=int, default=MazeDataConfig.train_users_per_goal,
                   help="training users per goal when data is generated")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_control_run)


def config_from_args(args: argparse.Namespace) -> ControlConfig:
    """The `ControlConfig` described by parsed `control run` arguments."""
    base = ControlConfig()
    return dataclasses.replace(
        base, goals=args.goals, seed=args.seed, scaling=args.scaling, data_dir=args.data,
        plots=not args.no_plots,
        data=dataclasses.replace(base.data, noise=args.noise, episodes=args.episodes,
                                 train_users_per_goal=args.users_per_goal),
        reward=dataclasses.replace(base.reward, epochs=args.reward_epochs,
                                   inference=args.vpl_inference, label_noise=args.label_noise,
                                   vpl_variant=args.vpl_variant),
        iql=dataclasses.replace(base.iql, steps=args.iql_steps, eval_every=args.eval_every,
                                hidden=args.iql_hidden, latent_scale=args.latent_scale),
    )


def _cmd_control_run(args: argparse.Namespace) -> int:
    from vpl.control.run import run_control

    try:
        res = run_control([args.reward], args.out, config_from_args(args),
                          progress=not args.quiet)[args.reward]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"success_rate": res["success_rate"], "per_goal": res["per_goal"],
                      "identifiable": res["identification"]["expected"]}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: `python -m vpl.control.cli {control run, data maze} ...`."""
    parser = argparse.ArgumentParser(prog="vpl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_control_commands(sub)
    data = sub.add_parser("data", help="data commands")
    add_maze_data_parser(data.add_subparsers(dest="data_command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
