"""End to end: maze data -> reward model -> relabeled offline data -> IQL -> success rates.

`run_control` runs one or several reward choices on the same data (the VPL model is trained
once and shared by `vpl`, `vpl-minmax` and `vpl-spo`) and writes `results.json`, the reward
maps and example rollouts for each.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vpl.checkpoint import save_model
from vpl.control import offline
from vpl.control.maze import Maze
from vpl.control.offline import MazeData, MazeDataConfig
from vpl.control.policy import (
    IQLSettings,
    LatentPolicy,
    eval_starts,
    rollout,
    save_policy,
    train_policy,
)
from vpl.control.rewards import (
    REWARDS,
    LearnedReward,
    RewardConfig,
    model_name,
    posterior_means,
    train_reward_model,
)
from vpl.data.io import atomic_write_text
from vpl.models import RewardModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControlConfig:
    """One control experiment: data, reward learning, policy learning and evaluation."""

    goals: int = 2
    """Number of goals (user types)."""
    seed: int = 0
    """Seed of data, reward model and policy."""
    scaling: str = "auto"
    """Reward scaling: auto (the reward choice's default), none, minmax or spo."""
    data_dir: str | None = None
    """Reuse maze data written by `vpl data maze`; generated (and saved in out/data) if None."""
    z_per_goal: int = 32
    """Training-user posterior means per goal used to relabel the offline data."""
    episodes_per_user: int = 20
    """Evaluation episodes per test user (test users per goal come from the data config)."""
    max_steps: int = 150
    """Episode limit at evaluation."""
    eval_seed: int = 1234
    """Seed of evaluation start states (the same for every reward choice)."""
    save_policies: bool = True
    """Save each trained policy under out/<reward>/policy."""
    plots: bool = True
    """Write reward_maps.png and rollouts.png."""
    data: MazeDataConfig = field(default_factory=MazeDataConfig)
    """Data generation (goals, seed are overridden by the fields above)."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Reward-model training."""
    iql: IQLSettings = field(default_factory=IQLSettings)
    """Offline RL."""


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o)}")


def _scaling(reward: str, cfg: ControlConfig) -> str:
    return REWARDS[reward][1] if cfg.scaling == "auto" else cfg.scaling


def _test_latents(data: MazeData, model: RewardModel | None, k: int) -> list[np.ndarray]:
    """Per goal, the latents (U_g, Z) of that goal's test users."""
    goal = data.splits["test"]["goal"]
    g_count = len(data.maze.goals)
    if model is None:  # oracle: one-hot goal
        eye = np.eye(g_count, dtype=np.float32)
        return [np.repeat(eye[g : g + 1], int((goal == g).sum()), 0) for g in range(g_count)]
    z = posterior_means(model, data.pairs("test"), k)
    return [z[goal == g] for g in range(g_count)]


def identification(data: MazeData, k: int, seed: int = 0) -> dict[str, Any]:
    """How well the test users' goals can be told from their labels at all, per goal.

    `test_users`: the share of this data's test users whose goal the Bayes classifier on the
    true distances (`offline.goal_posterior`) names from their labeled queries; `expected`:
    the same for `k` random queries, estimated on 1,000 simulated users per goal. Success of
    any policy that infers the user from k random queries is bounded by about
    expected x the oracle's success (a misidentified user is sent to another goal).
    """
    s, names = data.splits["test"], data.maze.goal_names
    k = min(k, data.config.test_queries)
    # each user's first k queries, picked as the test latents pick them (`posterior_means`)
    first = np.concatenate([idx[:k] for idx in data.pairs("test").by_user().values()])
    user = s["user"]
    post = offline.goal_posterior(data.maze, user[first], s["chosen"][first],
                                  s["rejected"][first], data.config.noise, len(s["goal"]))
    test = offline.identification_rate(post, s["goal"])
    exp = offline.expected_identification(data, k, seed=seed)
    return {"queries": k,
            "test_users": {n: float(v) for n, v in zip(names, test, strict=True)},
            "expected": {n: float(v) for n, v in zip(names, exp, strict=True)}}


def mean_identification(idents: list[dict[str, Any]]) -> dict[str, Any]:
    """`identification` results of several runs (seeds) averaged goal by goal."""
    if not idents:
        raise ValueError("no identification results to average")
    names = list(idents[0]["expected"])
    return {"queries": idents[0]["queries"],
            **{key: {n: float(np.mean([i[key][n] for i in idents])) for n in names}
               for key in ("test_users", "expected")}}


def _relabel(data: MazeData, reward: str, model: RewardModel | None, cfg: ControlConfig,
             fn: LearnedReward | None) -> tuple[np.ndarray, np.ndarray]:
    """Latents (M, Z) to train under and rewards (M, E, L) of the next states under each."""
    maze, nxt = data.maze, data.obs[:, 1:].reshape(-1, 2)
    shape = data.actions.shape[:2]
    g_count = len(maze.goals)
    if model is None:
        lat = np.eye(g_count, dtype=np.float32)
        rew = np.stack([maze.true_reward(nxt, g).reshape(shape) for g in range(g_count)])
        return lat, rew
    assert fn is not None
    if model.latent_dim == 0:
        return np.zeros((1, 0), np.float32), fn(nxt, None).reshape(1, *shape)
    z = posterior_means(model, data.pairs("train"), cfg.reward.context_size)
    goal = data.splits["train"]["goal"]
    rng = np.random.default_rng(cfg.seed + 7)
    # a few users of every goal (stratified only so that every goal is represented)
    pick = np.concatenate([
        rng.choice(idx, min(cfg.z_per_goal, len(idx)), replace=False)
        for idx in (np.flatnonzero(goal == g) for g in range(g_count))])
    lat = z[pick]
    rew = np.stack([fn(nxt, zz).reshape(shape) for zz in lat])
    return lat, rew


def evaluate(policy: LatentPolicy, maze: Maze, latents: list[np.ndarray], episodes: int,
             max_steps: int, seed: int) -> tuple[dict[str, float], dict[int, np.ndarray]]:
    """Success rate of each goal (name -> rate) and the paths, with fixed start states."""
    rng = np.random.default_rng(seed)
    per_goal: dict[str, float] = {}
    paths: dict[int, np.ndarray] = {}
    for g, z in enumerate(latents):
        starts = eval_starts(maze, g, len(z) * episodes, rng)
        zz = np.repeat(z, episodes, axis=0)
        ok, p = rollout(policy.act, maze, g, starts, zz, max_steps)
        per_goal[maze.goal_names[g]] = float(ok.mean())
        paths[g] = p
    return per_goal, paths


def _reward_quality(maze: Maze, fn: LearnedReward | None, latents: list[np.ndarray],
                    ref: np.ndarray) -> dict[str, float]:
    """Pearson correlation of each goal's learned reward (first test user) with the true one."""
    if fn is None:
        return {}
    out = {}
    for g, z in enumerate(latents):
        learned = fn(ref, z[0] if z.shape[1] else None)
        out[maze.goal_names[g]] = float(np.corrcoef(learned, maze.true_reward(ref, g))[0, 1])
    return out


def _draw_walls(ax: Any, maze: Maze) -> None:
    walls = np.ma.masked_where(maze.free, np.ones(maze.shape))  # free cells transparent
    ax.imshow(walls, cmap="Greys", vmin=0, vmax=1.5, origin="upper",
              extent=(0, maze.shape[1], maze.shape[0], 0))
    for g in range(len(maze.goals)):
        gx, gy = maze.goal_pos(g)
        ax.plot(gx, gy, "*", ms=14, color="gold", mec="k")
        ax.text(gx + 0.3, gy - 0.3, maze.goal_names[g], fontsize=10, weight="bold")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_reward_maps(maze: Maze, fn: LearnedReward | None, latents: list[np.ndarray],
                     path: Path, title: str = "", resolution: int = 8) -> None:
    """Per goal: learned reward under a test user's latent (left) beside the true one (right)."""
    from vpl.experiments.report import pyplot

    plt = pyplot()

    h, w = maze.shape
    xs = (np.arange(w * resolution) + 0.5) / resolution
    ys = (np.arange(h * resolution) + 0.5) / resolution
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype(np.float32)
    free = maze.is_free(grid)
    g_count = len(latents)
    fig, axes = plt.subplots(g_count, 2, figsize=(8, 3.2 * g_count), squeeze=False)
    for g, z in enumerate(latents):
        true = maze.true_reward(grid, g)
        learned = true if fn is None else fn(grid, z[0] if z.shape[1] else None)
        for ax, vals, name in ((axes[g, 0], learned, "learned" if fn else "oracle"),
                               (axes[g, 1], true, "true")):
            img = np.where(free, vals, np.nan).reshape(len(ys), len(xs))
            ax.imshow(img, origin="upper", extent=(0, w, h, 0), cmap="viridis")
            _draw_walls(ax, maze)
            ax.set_title(f"user of goal {maze.goal_names[g]}: {name}", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_rollouts(maze: Maze, paths: dict[int, np.ndarray], path: Path, title: str = "",
                  per_goal: int = 6) -> None:
    """Example evaluation trajectories, one panel per goal."""
    from vpl.experiments.report import pyplot

    plt = pyplot()

    g_count = len(paths)
    fig, axes = plt.subplots(1, g_count, figsize=(4.2 * g_count, 3.6), squeeze=False)
    for g, p in paths.items():
        ax = axes[0, g]
        _draw_walls(ax, maze)
        for tr in p[:per_goal]:
            ax.plot(tr[:, 0], tr[:, 1], "-", lw=1.2, alpha=0.8)
            ax.plot(tr[0, 0], tr[0, 1], "o", ms=4, color="k")
        ax.set_title(f"goal {maze.goal_names[g]}", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _control_data(cfg: ControlConfig, out: Path) -> MazeData:
    """The offline data: loaded from `cfg.data_dir`, or generated and saved under `out/data`."""
    if cfg.data_dir:
        return offline.load(cfg.data_dir)
    data = offline.generate(dataclasses.replace(cfg.data, goals=cfg.goals, seed=cfg.seed))
    offline.save(data, out / "data")
    return data


def _eval_curve(reward: str, maze: Maze, test_z: list[np.ndarray], cfg: ControlConfig,
                curve: list[dict[str, Any]]) -> Callable[[LatentPolicy, int], None]:
    """A policy callback that appends the success rate at each evaluation step to `curve`."""
    def on_eval(policy: LatentPolicy, step: int) -> None:
        pg, _ = evaluate(policy, maze, test_z, cfg.episodes_per_user, cfg.max_steps,
                         cfg.eval_seed)
        curve.append({"step": step, "success_rate": float(np.mean(list(pg.values()))),
                      "per_goal": pg})
        log.info("%s step %d: success %.3f", reward, step, curve[-1]["success_rate"])
    return on_eval


def _save_outputs(where: Path, res: dict[str, Any], policy: LatentPolicy,
                  model: RewardModel | None, fn: LearnedReward | None, maze: Maze,
                  test_z: list[np.ndarray], paths: Any, cfg: ControlConfig) -> None:
    """results.json, and the policy, reward model and plots where the config asks for them."""
    where.mkdir(parents=True, exist_ok=True)
    if cfg.save_policies:
        save_policy(policy, where / "policy", {"reward": res["reward"],
                                               "scaling": res["scaling"]})
        if model is not None:
            save_model(model, where / "reward_model")
    if cfg.plots:
        plot_reward_maps(maze, fn, test_z, where / "reward_maps.png", title=res["reward"])
        plot_rollouts(maze, paths, where / "rollouts.png", title=res["reward"])
    atomic_write_text(where / "results.json", json.dumps(res, indent=2, default=_json_default))


def run_control(rewards: list[str], out: str | os.PathLike, cfg: ControlConfig | None = None,
                *, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Run each reward choice on shared data; write results.json (+ plots) per choice.

    With one reward choice the files go into `out`; with several, into `out/<reward>`.
    """
    cfg = cfg or ControlConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for r in rewards:
        if r != "oracle":
            model_name(r)  # fail early if a model is not registered
    t0 = time.perf_counter()
    data = _control_data(cfg, out)
    t_data = time.perf_counter() - t0
    maze = data.maze
    ref = data.obs.reshape(-1, 2)
    rcfg = dataclasses.replace(cfg.reward, seed=cfg.seed)
    iql = dataclasses.replace(cfg.iql, seed=cfg.seed).for_goals(len(maze.goals))
    # what actually ran: the data's own config (generated or loaded) and the seeded sub-configs
    effective = dataclasses.replace(cfg, data=data.config, reward=rcfg, iql=iql)
    ident = identification(data, rcfg.context_size, seed=cfg.seed)
    log.info("Bayes-identifiable from %d random queries: %s", ident["queries"],
             {k: round(v, 3) for k, v in ident["expected"].items()})
    models: dict[str, tuple[RewardModel, dict[str, float]]] = {}
    results: dict[str, dict[str, Any]] = {}
    for reward in rewards:
        t1 = time.perf_counter()
        scaling = _scaling(reward, cfg)
        model, fn, train_info = None, None, {}
        if reward != "oracle":
            name = model_name(reward)
            if name not in models:
                m, tr = train_reward_model(reward, data, rcfg, progress=progress)
                models[name] = (m, {"val_accuracy": tr.best_val_accuracy,
                                    "seconds": tr.seconds, "epochs": len(tr.history)})
            model, train_info = models[name]
            fn = LearnedReward(model, maze, scaling, ref, rcfg.spo_comparisons, seed=cfg.seed)
        t_reward = time.perf_counter() - t1
        latents, rew = _relabel(data, reward, model, cfg, fn)
        log.info("%s: latent |z| mean %.3f, z std %.3f; rewards mean %.3f std %.3f "
                 "mean |step diff| %.4f", reward, float(np.abs(latents).mean()) if latents.size
                 else 0.0, float(latents.std(0).mean()) if latents.size else 0.0,
                 float(rew.mean()), float(rew.std()), float(np.abs(np.diff(rew, axis=2)).mean()))
        test_z = _test_latents(data, model, rcfg.context_size)
        curve: list[dict[str, Any]] = []
        t2 = time.perf_counter()
        policy = train_policy(maze, data.obs, data.actions, latents, rew, iql,
                              _eval_curve(reward, maze, test_z, cfg, curve), progress=progress)
        t_policy = time.perf_counter() - t2
        per_goal, paths = evaluate(policy, maze, test_z, cfg.episodes_per_user, cfg.max_steps,
                                   cfg.eval_seed)
        res = {
            "reward": reward, "scaling": scaling, "goals": len(maze.goals), "seed": cfg.seed,
            "success_rate": float(np.mean(list(per_goal.values()))), "per_goal": per_goal,
            "curve": curve, "iql_steps": iql.steps,
            "relabel_latents": int(len(latents)),
            "reward_model": train_info,
            "reward_correlation": _reward_quality(maze, fn, test_z, ref[::10]),
            "identification": ident,
            "seconds": {"data": t_data, "reward_model": t_reward, "policy": t_policy,
                        "total": time.perf_counter() - t1},
            "config": dataclasses.asdict(effective),
        }
        _save_outputs(out if len(rewards) == 1 else out / reward, res, policy, model, fn, maze,
                      test_z, paths, cfg)
        results[reward] = res
        log.info("%s: success %.3f %s", reward, res["success_rate"], per_goal)
    return results
