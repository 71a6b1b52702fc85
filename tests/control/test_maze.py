"""The maze: gymnasium env, shortest paths, distances and motion."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tests.control.helpers import TINY, tiny_maze
from vpl.control.maze import MazeEnv, bfs_distances, parse_layout


def test_env_passes_gymnasium_checker() -> None:
    env = MazeEnv("large", n_goals=2)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0, options={"goal": 1})
    assert env.observation_space.contains(obs)


def test_bfs_on_tiny_maze_respects_walls() -> None:
    d = bfs_distances(parse_layout(TINY), (1, 1))
    assert d[1, 1] == 0 and d[2, 1] == 1 and d[2, 2] == 2 and d[2, 3] == 3
    assert d[1, 3] == 4  # around the wall, not 2 across it
    assert np.isinf(d[0, 0]) and np.isinf(d[1, 2])


def test_continuous_distance_and_reward() -> None:
    maze = tiny_maze()
    centres = np.array([[1.5, 1.5], [3.5, 1.5], [2.5, 2.5]], dtype=np.float32)
    np.testing.assert_allclose(maze.distance(centres, 0), [0.0, 4.0, 2.0], atol=1e-6)
    # halfway between two centres of a corridor
    np.testing.assert_allclose(maze.distance(np.array([[2.0, 2.5]]), 0), [1.5], atol=1e-6)
    r = maze.true_reward(maze.sample_free(200, np.random.default_rng(0)), 1)
    assert r.min() >= 0 and r.max() <= 1


def test_walls_block_motion() -> None:
    maze = tiny_maze()
    pos = np.array([[1.8, 1.5]], dtype=np.float32)
    # right is a wall: x does not change; down is free
    nxt = maze.step_positions(pos, np.array([[1.0, 1.0]]))
    assert nxt[0, 0] == pytest.approx(1.8) and nxt[0, 1] == pytest.approx(1.5 + maze.step_size)
    assert maze.is_free(nxt).all()
