"""Command line for the control experiment: `vpl control run` and `vpl data maze`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from vpl.cliargs import add_config_args, from_args
from vpl.control.offline import MazeDataConfig
from vpl.control.policy import LATENT_SCALES, IQLSettings
from vpl.control.rewards import REWARDS, SCALINGS, VPL_VARIANTS, RewardConfig
from vpl.control.run import ControlConfig

CHOICES = sorted(REWARDS)


MAZE_FLAGS = {"train_users_per_goal": "users-per-goal"}
"""Flag names of `MazeDataConfig` fields that differ from the field names."""
REWARD_FLAGS = {"epochs": "reward-epochs", "patience": "reward-patience", "lr": "reward-lr",
                "hidden": "reward-hidden", "layers": "reward-layers",
                "inference": "vpl-inference"}
"""Flag names of `RewardConfig` fields (prefixed where another config has the same field)."""
IQL_FLAGS = {"steps": "iql-steps", "batch_size": "iql-batch-size", "hidden": "iql-hidden",
             "lr": "iql-lr", "tau": "iql-tau", "threads": "iql-threads"}
"""Flag names of `IQLSettings` fields."""


def add_maze_data_parser(data_subparsers: argparse._SubParsersAction) -> None:
    """Register `maze` under `vpl data`: exploration data + simulated users into --out, one
    flag per `MazeDataConfig` field."""
    p = data_subparsers.add_parser("maze", help="generate offline maze data and preference sets")
    p.add_argument("--out", required=True, help="output folder")
    add_config_args(p, MazeDataConfig, names=MAZE_FLAGS)
    p.set_defaults(func=_cmd_data_maze)


def _cmd_data_maze(args: argparse.Namespace) -> int:
    from vpl.control.offline import generate, save

    cfg = from_args(MazeDataConfig, args)
    path = save(generate(cfg), args.out)
    print(f"wrote maze data to {path}")
    return 0


def add_control_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `control` with its `run` subcommand under the main parser's subparsers: one
    flag per field of `ControlConfig` and of its data, reward and policy configs (the seed
    and the number of goals are set once, for all of them)."""
    ctl = subparsers.add_parser("control", help="maze control experiment (offline RL)")
    sub = ctl.add_subparsers(dest="control_command", required=True)
    p = sub.add_parser("run", help="learn a reward, train an IQL policy, evaluate success")
    p.add_argument("--reward", required=True, choices=CHOICES, help="reward model")
    p.add_argument("--out", required=True, help="output folder (results.json, plots, policy)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_args(p, ControlConfig, names={"data_dir": "data"},
                    skip=("data", "reward", "iql"), choices={"scaling": ("auto", *SCALINGS)})
    add_config_args(p.add_argument_group("maze data (when generated)"), MazeDataConfig,
                    names=MAZE_FLAGS, skip=("goals", "seed"))
    add_config_args(p.add_argument_group("reward model"), RewardConfig, names=REWARD_FLAGS,
                    skip=("seed",), choices={"vpl_variant": VPL_VARIANTS,
                                             "inference": ("amortized", "bank")})
    add_config_args(p.add_argument_group("policy (IQL)"), IQLSettings, names=IQL_FLAGS,
                    skip=("seed",), choices={"latent_scale": LATENT_SCALES})
    p.set_defaults(func=_cmd_control_run)


def config_from_args(args: argparse.Namespace) -> ControlConfig:
    """The `ControlConfig` described by parsed `control run` arguments."""
    return from_args(ControlConfig, args,
                     data=from_args(MazeDataConfig, args, goals=args.__dict__["ControlConfig.goals"],
                                    seed=args.__dict__["ControlConfig.seed"]),
                     reward=from_args(RewardConfig, args),
                     iql=from_args(IQLSettings, args))


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
