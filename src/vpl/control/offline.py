"""Offline maze data: reward-free exploration, preference queries and simulated users.

A simulated user wants one goal and, shown two states, prefers the one with the shorter
shortest-path distance to it; with probability `noise` the label is flipped. Each user labels
one query set of `pairs_per_user` state pairs drawn from the exploration data. Everything is
saved as `.npz` + `meta.json` in one folder and turned into `PairData` (items = state features)
on load.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpl.control.maze import Maze
from vpl.data.io import atomic_write_text
from vpl.data.pairs import PairData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MazeDataConfig:
    """How exploration data and simulated users are generated."""

    goals: int = 2
    """Number of goals (user types)."""
    layout: str = "large"
    """D4RL maze layout name (large, medium, umaze)."""
    episodes: int = 500
    """Exploration episodes, each from a uniform random free start."""
    episode_len: int = 60
    """Steps per exploration episode."""
    action_persistence: float = 0.7
    """Exploration actions follow a_t = p * a_{t-1} + (1 - p) * uniform noise, then clipped."""
    train_users_per_goal: int = 200
    """Simulated users per goal whose query sets train the reward model."""
    val_pairs_per_user: int = 4
    """Extra labeled pairs of every training user, held out for early stopping."""
    test_users_per_goal: int = 5
    """Users per goal whose queries give the latent used at test time."""
    pairs_per_user: int = 16
    """State pairs in each training user's query set."""
    test_queries: int = 8
    """Labeled queries of each test user (the context K at test time)."""
    noise: float = 0.05
    """Probability that a label is flipped."""
    local_fraction: float = 0.5
    """Share of queries that compare two states of one exploration segment (<= `segment`
    steps apart); the rest compare two random states. Local queries teach the fine structure
    of the reward near walls."""
    segment: int = 10
    """Maximum steps between the two states of a local query."""
    seed: int = 0
    """Seed for exploration and users."""


@dataclass
class MazeData:
    """Exploration transitions and the three user splits (positions, not features)."""

    config: MazeDataConfig
    maze: Maze
    obs: np.ndarray  # (E, L+1, 2) positions in cell units
    actions: np.ndarray  # (E, L, 2)
    splits: dict[str, dict[str, np.ndarray]]  # name -> user (P,), goal (U,), a (P,2), b (P,2)

    def pairs(self, split: str) -> PairData:
        """`PairData` of a split: items = state features, chosen = the preferred state.

        `val` holds held-out pairs of the `train` users (same user names), so validation
        contexts come from each user's training pairs.
        """
        s = self.splits[split]
        n = len(s["user"])
        items = self.maze.features(np.concatenate([s["chosen"], s["rejected"]]))
        names = self.maze.goal_names
        prefix = "train" if split == "val" else split
        return PairData(
            items=items, user=s["user"], chosen=np.arange(n), rejected=np.arange(n, 2 * n),
            users=[f"{prefix}-{u}" for u in range(len(s["goal"]))],
            user_types=[names[g] for g in s["goal"]],
        )


def explore(maze: Maze, episodes: int, length: int, persistence: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Reward-free random-walk trajectories: positions (E, L+1, 2), actions (E, L, 2)."""
    pos = maze.sample_free(episodes, rng)
    obs = np.zeros((episodes, length + 1, 2), dtype=np.float32)
    acts = np.zeros((episodes, length, 2), dtype=np.float32)
    a = rng.uniform(-1, 1, (episodes, 2))
    obs[:, 0] = pos
    for t in range(length):
        a = np.clip(persistence * a + (1 - persistence) * rng.uniform(-2, 2, a.shape), -1, 1)
        acts[:, t] = a
        pos = maze.step_positions(pos, a)
        obs[:, t + 1] = pos
    return obs, acts


def label_pairs(maze: Maze, goal: np.ndarray, a: np.ndarray, b: np.ndarray, noise: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(chosen, rejected) positions: the one closer to each pair's goal wins, flipped w.p. noise."""
    da = np.empty(len(a))
    db = np.empty(len(b))
    for g in np.unique(goal):
        m = goal == g
        da[m] = maze.distance(a[m], int(g))
        db[m] = maze.distance(b[m], int(g))
    a_wins = (da < db) ^ (rng.random(len(a)) < noise)
    chosen = np.where(a_wins[:, None], a, b)
    rejected = np.where(a_wins[:, None], b, a)
    return chosen.astype(np.float32), rejected.astype(np.float32)


def sample_queries(obs: np.ndarray, n: int, local_fraction: float, segment: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n state pairs (a, b), each (n, 2), from trajectories obs (E, L+1, 2).

    A `local_fraction` share are two states of one trajectory at most `segment` steps apart;
    the others are two independent uniform states.
    """
    e, length = obs.shape[:2]
    flat = obs.reshape(-1, 2)
    a = flat[rng.integers(0, len(flat), n)]
    b = flat[rng.integers(0, len(flat), n)]
    local = rng.random(n) < local_fraction
    k = int(local.sum())
    if k:
        ep = rng.integers(0, e, k)
        gap = rng.integers(1, min(segment, length - 1) + 1, k)
        t = rng.integers(0, length - gap)
        a[local] = obs[ep, t]
        b[local] = obs[ep, t + gap]
    return a, b


def make_users(maze: Maze, obs: np.ndarray, users_per_goal: int, pairs_per_user: int,
               noise: float, rng: np.random.Generator, local_fraction: float = 0.5,
               segment: int = 10) -> dict[str, np.ndarray]:
    """A split of simulated users, each labeling `pairs_per_user` state pairs from `obs`."""
    goal = np.repeat(np.arange(len(maze.goals)), users_per_goal)
    user = np.repeat(np.arange(len(goal)), pairs_per_user)
    a, b = sample_queries(obs, len(user), local_fraction, segment, rng)
    chosen, rejected = label_pairs(maze, goal[user], a, b, noise, rng)
    return {"user": user, "goal": goal, "chosen": chosen, "rejected": rejected}


def generate(config: MazeDataConfig) -> MazeData:
    """Exploration data and simulated users from a config."""
    rng = np.random.default_rng(config.seed)
    maze = Maze.from_name(config.layout, config.goals)
    obs, acts = explore(maze, config.episodes, config.episode_len, config.action_persistence, rng)
    c = config
    both = make_users(maze, obs, c.train_users_per_goal, c.pairs_per_user +
                      c.val_pairs_per_user, c.noise, rng, c.local_fraction, c.segment)
    is_val = np.tile(np.arange(c.pairs_per_user + c.val_pairs_per_user) >= c.pairs_per_user,
                     len(both["goal"]))
    splits = {
        name: {"user": both["user"][m], "goal": both["goal"], "chosen": both["chosen"][m],
               "rejected": both["rejected"][m]}
        for name, m in (("train", ~is_val), ("val", is_val))
    }
    splits["test"] = make_users(maze, obs, c.test_users_per_goal, c.test_queries, c.noise, rng,
                                c.local_fraction, c.segment)
    return MazeData(config, maze, obs, acts, splits)


def save(data: MazeData, out: str | os.PathLike) -> Path:
    """Write `exploration.npz`, `users_{split}.npz` and `meta.json` into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "exploration.npz", observations=data.obs, actions=data.actions)
    for name, s in data.splits.items():
        np.savez_compressed(out / f"users_{name}.npz", **s)
    meta = {"config": dataclasses.asdict(data.config), "goals": [list(g) for g in data.maze.goals],
            "goal_names": data.maze.goal_names,
            "transitions": int(data.actions.shape[0] * data.actions.shape[1])}
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2))  # last: marks a complete save
    return out


def load(path: str | os.PathLike) -> MazeData:
    """Read a folder written by `save`."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: not found; create it with `vpl data maze`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    config = MazeDataConfig(**meta["config"])
    maze = Maze.from_name(config.layout, config.goals)
    ex = np.load(path / "exploration.npz")
    splits = {}
    for name in ("train", "val", "test"):
        with np.load(path / f"users_{name}.npz") as z:
            splits[name] = {k: z[k] for k in z.files}
    return MazeData(config, maze, ex["observations"], ex["actions"], splits)


def goal_posterior(maze: Maze, user: np.ndarray, chosen: np.ndarray, rejected: np.ndarray,
                   noise: float, n_users: int) -> np.ndarray:
    """Exact posterior over goals (U, G) of each user from their labels, uniform prior.

    The Bayes classifier that knows every goal's true distances and the flip rate `noise`: a
    label agreeing with goal g has likelihood 1 - noise, a disagreeing one noise, a pair the
    goal ranks equal 1/2. No learned model can identify users better from the same labels.
    """
    if not 0.0 <= noise < 0.5:
        raise ValueError(f"noise must be in [0, 0.5), got {noise}")
    g_count = len(maze.goals)
    eps = max(noise, 1e-6)  # noise-free labels: a disagreeing label all but rules a goal out
    loglik = np.zeros((n_users, g_count))
    for g in range(g_count):
        dc, dr = maze.distance(chosen, g), maze.distance(rejected, g)
        ll = np.where(dc < dr, np.log1p(-eps), np.where(dc > dr, np.log(eps), np.log(0.5)))
        np.add.at(loglik[:, g], user, ll)
    post = np.exp(loglik - loglik.max(1, keepdims=True))
    return post / post.sum(1, keepdims=True)


def identification_rate(post: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Per goal (G,), the expected share of its users whose MAP goal is right (ties split)."""
    top = post >= post.max(1, keepdims=True) - 1e-12
    hit = top[np.arange(len(goal)), goal] / top.sum(1)
    return np.array([hit[goal == g].mean() if (goal == g).any() else np.nan
                     for g in range(post.shape[1])])


def expected_identification(data: MazeData, queries: int, users_per_goal: int = 1000,
                            seed: int = 0) -> np.ndarray:
    """Per goal (G,), how often the Bayes classifier names a new user's goal from `queries`
    random labeled queries drawn like the data's test users: the information ceiling of any
    model that infers a user from that many random queries."""
    c = data.config
    s = make_users(data.maze, data.obs, users_per_goal, queries, c.noise,
                   np.random.default_rng(seed), c.local_fraction, c.segment)
    post = goal_posterior(data.maze, s["user"], s["chosen"], s["rejected"], c.noise,
                          len(s["goal"]))
    return identification_rate(post, s["goal"])


def make_maze_data(goals: int, out: str | os.PathLike, seed: int = 0,
                   noise: float = 0.05, **overrides: object) -> Path:
    """Generate and save maze data (the `vpl data maze` command)."""
    cfg = MazeDataConfig(goals=goals, seed=seed, noise=noise, **overrides)  # type: ignore[arg-type]
    data = generate(cfg)
    log.info("maze data: %d transitions, %d train users -> %s", data.actions.size // 2,
             len(data.splits["train"]["goal"]), out)
    return save(data, out)
