"""Active query selection in the maze: policy success after each answered query.

New simulated users (each wants one goal) get a candidate pool of state-pair queries drawn
from the offline exploration data, labeled by their goal's shortest-path distance (with the
data's label noise). A strategy picks queries one at a time (`paper`: the whole budget at
once), the posterior is re-encoded after every answer, and the z-conditioned policy is rolled
out with z = posterior mean after 0, 1, ..., budget answers. Every strategy and every n uses the
same users, pools and start states, so the curves differ only by the queries chosen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vpl.active.acquisition import CandidatePool, posterior_entropy, posterior_variance
from vpl.active.session import ActiveResult, ActiveSession, answer_loop
from vpl.control.offline import MazeData, sample_queries
from vpl.control.policy import LatentPolicy, eval_starts, rollout
from vpl.models.base import RewardModel


def simulated_pools(data: MazeData, users_per_goal: int, pool_size: int, seed: int
                    ) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Per new user: (goal, first states (N, 2), second states (N, 2), labels (N,) bool).

    A label is True when the user prefers the first state (closer to the goal by shortest
    path), flipped with the data's noise probability; queries are drawn like the data's.
    """
    cfg, maze = data.config, data.maze
    rng = np.random.default_rng([seed, 7919])
    out = []
    for g in range(len(maze.goals)):
        for _ in range(users_per_goal):
            a, b = sample_queries(data.obs, pool_size, cfg.local_fraction, cfg.segment, rng)
            first_wins = maze.distance(a, g) < maze.distance(b, g)
            first_wins ^= rng.random(pool_size) < cfg.noise
            out.append((g, a, b, first_wins))
    return out


def run_maze_active(model: RewardModel, policy: LatentPolicy, data: MazeData, strategy: str,
                    *, budget: int = 8, users_per_goal: int = 10, pool_size: int = 256,
                    episodes: int = 4, max_steps: int = 150, samples: int = 16, batch: int = 1,
                    seed: int = 0, progress: bool = True) -> ActiveResult:
    """Success rate of each simulated new user after 0..budget answers (`accuracy` field).

    Each user's success at n is the share of `episodes` rollouts, from start states fixed per
    user, that reach the user's goal within `max_steps` with z = posterior mean after n answers.
    """
    model.eval()
    maze = data.maze
    users = simulated_pools(data, users_per_goal, pool_size, seed)
    n_users = len(users)
    lat = np.zeros((n_users, budget + 1, model.latent_dim), dtype=np.float32)
    ent = np.full((n_users, budget + 1), np.nan)
    var = np.full_like(ent, np.nan)
    times: list[float] = []
    asked_all: list[list[int]] = []
    rng = np.random.default_rng([seed, 104729])
    for row, (_, a, b, first_wins) in enumerate(tqdm(users, desc=f"maze active {strategy}",
                                                     disable=not progress, leave=False)):
        pool = CandidatePool.from_vectors(maze.features(a), maze.features(b))
        session = ActiveSession(model, pool, strategy=strategy, samples=samples,
                                seed=int(rng.integers(2**31)))
        for n, post in answer_loop(session, lambda q, fw=first_wins: bool(fw[q]), budget,
                                   batch, times):
            lat[row, n] = post.mean[0].numpy()
            ent[row, n] = float(posterior_entropy(post)[0])
            var[row, n] = float(posterior_variance(post)[0])
        asked_all.append(list(session.asked))
    success = _success(policy, maze, users, lat, episodes, max_steps, seed)
    cfg: dict[str, Any] = {"budget": budget, "batch": batch, "pool_size": pool_size,
                           "users_per_goal": users_per_goal, "episodes": episodes,
                           "max_steps": max_steps, "seed": seed, "samples": samples,
                           "metric": "success"}
    names = [f"goal{maze.goal_names[g]}-{i % users_per_goal}" for i, (g, *_) in enumerate(users)]
    return ActiveResult(strategy=strategy, users=names, accuracy=success, entropy=ent,
                        variance=var, select_ms=times, asked=asked_all, config=cfg)


@torch.no_grad()
def _success(policy: LatentPolicy, maze: Any, users: list[tuple[int, Any, Any, Any]],
             lat: np.ndarray, episodes: int, max_steps: int, seed: int) -> np.ndarray:
    """(U, budget + 1) success rates; one batched rollout per (goal, n)."""
    n_users, steps = lat.shape[:2]
    goals = np.array([u[0] for u in users])
    out = np.zeros((n_users, steps))
    for g in np.unique(goals):
        rows = np.flatnonzero(goals == g)
        # start states fixed per (seed, goal): the same for every strategy and every n
        starts = eval_starts(maze, int(g), len(rows) * episodes,
                             np.random.default_rng([seed, 15485863, int(g)]))
        for n in range(steps):
            z = np.repeat(lat[rows, n], episodes, axis=0)
            ok, _ = rollout(policy.act, maze, int(g), starts, z, max_steps)
            out[rows, n] = ok.reshape(len(rows), episodes).mean(1)
    return out
