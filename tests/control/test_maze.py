"""Maze env, shortest paths, labels, SPO scaling and policy save/load."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from vpl.control.maze import Maze, MazeEnv, bfs_distances, parse_layout
from vpl.control.offline import label_pairs
from vpl.control.policy import (
    IQLSettings,
    load_policy,
    n_step_returns,
    save_policy,
    train_policy,
)
from vpl.control.rewards import LearnedReward, spo_reward
from vpl.models import build

TINY = """
#####
#O#O#
#OOO#
#####
"""


def tiny_maze() -> Maze:
    return Maze(parse_layout(TINY), [(1, 1), (1, 3)])


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


def test_labels_prefer_state_closer_to_goal() -> None:
    maze = tiny_maze()
    rng = np.random.default_rng(0)
    a, b = maze.sample_free(100, rng), maze.sample_free(100, rng)
    goal = np.zeros(100, dtype=int)
    ch, rj = label_pairs(maze, goal, a, b, 0.0, rng)
    assert (maze.distance(ch, 0) <= maze.distance(rj, 0)).all()


def test_spo_reward_in_unit_interval() -> None:
    r = np.random.default_rng(0).normal(0, 100, 500)
    s = spo_reward(r, r[:50])
    assert s.min() >= 0 and s.max() <= 1
    maze = Maze.from_name("large", 2)
    torch.manual_seed(0)
    model = build("vpl", maze.feature_dim, latent_dim=4, hidden=32)
    ref = maze.sample_free(300, np.random.default_rng(1))
    fn = LearnedReward(model, maze, "spo", ref, comparisons=64)
    for z in (np.zeros(4), 50 * np.ones(4), -30 * np.ones(4)):
        v = fn(maze.sample_free(400, np.random.default_rng(2)), z.astype(np.float32))
        assert v.min() >= 0.0 and v.max() <= 1.0


def test_n_step_returns_known_values() -> None:
    r = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    sums, horizon = n_step_returns(r, 3, 0.5)
    # t=0: 1 + .5*2 + .25*3; t=1: 2 + .5*3 + .25*4; t=2: 3 + .5*4 (trajectory ends); t=3: 4
    np.testing.assert_allclose(sums, [[2.75, 4.5, 5.0, 4.0]])
    np.testing.assert_array_equal(horizon, [3, 3, 2, 1])
    one, h1 = n_step_returns(r, 1, 0.99)
    np.testing.assert_allclose(one, r)
    np.testing.assert_array_equal(h1, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="n_step"):
        n_step_returns(r, 0, 0.99)


def test_latent_scaling_global_and_per_dim() -> None:
    maze = tiny_maze()
    rng = np.random.default_rng(0)
    obs = np.stack([maze.sample_free(6, rng) for _ in range(4)])
    acts = rng.uniform(-1, 1, (4, 5, 2)).astype(np.float32)
    lat = np.array([[1.0, 0.0], [-1.0, 0.02], [3.0, -0.02]], dtype=np.float32)
    rew = rng.random((3, 4, 5)).astype(np.float32)
    small = IQLSettings(steps=1, batch_size=8, hidden=16)
    pol = train_policy(maze, obs, acts, lat, rew, small, progress=False)
    np.testing.assert_allclose(pol.z_shift, lat.mean(0), atol=1e-6)
    assert pol.z_scale[0] == pol.z_scale[1]  # one common scale: the noise dimension stays small
    assert np.abs(pol.latent_input(lat)[:, 1]).max() < 0.05
    per_dim = train_policy(maze, obs, acts, lat, rew,
                           dataclasses.replace(small, latent_scale="per-dim"), progress=False)
    np.testing.assert_allclose(per_dim.latent_input(lat).std(0), 1.0, atol=0.1)
    with pytest.raises(ValueError, match="latent_scale"):
        train_policy(maze, obs, acts, lat, rew, dataclasses.replace(small, latent_scale="x"),
                     progress=False)


def test_policy_save_load_round_trip(tmp_path) -> None:
    maze = tiny_maze()
    rng = np.random.default_rng(0)
    obs = np.stack([maze.sample_free(6, rng) for _ in range(4)])  # (E=4, L+1=6, 2)
    acts = rng.uniform(-1, 1, (4, 5, 2)).astype(np.float32)
    lat = np.eye(2, dtype=np.float32)
    rew = rng.random((2, 4, 5)).astype(np.float32)
    pol = train_policy(maze, obs, acts, lat, rew, IQLSettings(steps=3, batch_size=8, hidden=16),
                       progress=False)
    save_policy(pol, tmp_path / "p")
    again = load_policy(tmp_path / "p")
    pos = maze.sample_free(5, rng)
    z = np.repeat(lat[:1], 5, 0)
    np.testing.assert_allclose(pol.act(pos, z), again.act(pos, z), atol=1e-6)
    assert again.latent_dim == 2 and again.maze.goals == maze.goals


def test_reward_model_training_is_seeded() -> None:
    """Same seed, same weights: the initialization happens inside the seeded run."""
    from vpl.control.offline import MazeDataConfig, generate
    from vpl.control.rewards import RewardConfig, train_reward_model

    data = generate(MazeDataConfig(goals=2, episodes=30, train_users_per_goal=6,
                                   test_users_per_goal=1))
    cfg = RewardConfig(epochs=2, hidden=16, seed=3)
    torch.manual_seed(123)  # a different global RNG state before each run must not matter
    a, _ = train_reward_model("vpl", data, cfg)
    torch.manual_seed(456)
    b, _ = train_reward_model("vpl", data, cfg)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_vpl_variant_selects_the_configuration() -> None:
    from vpl.control.offline import MazeDataConfig, generate
    from vpl.control.rewards import RewardConfig, train_reward_model

    data = generate(MazeDataConfig(goals=2, episodes=30, train_users_per_goal=4,
                                   test_users_per_goal=1))
    paper, _ = train_reward_model("vpl-spo", data, RewardConfig(epochs=1, hidden=16,
                                                                vpl_variant="concat"))
    default, _ = train_reward_model("vpl-spo", data, RewardConfig(epochs=1, hidden=16))
    assert paper.config.latent_mode == "concat" and paper.config.set_encoder == "attention"
    assert default.config.latent_mode == "head" and default.config.context_nll == 1.0
    with pytest.raises(ValueError, match="vpl_variant"):
        train_reward_model("vpl", data, RewardConfig(vpl_variant="nope"))


def test_iql_width_follows_the_goal_count() -> None:
    auto = IQLSettings()
    assert auto.hidden == 0
    assert [auto.for_goals(g).hidden for g in (1, 2, 4, 6)] == [128, 128, 256, 384]
    assert IQLSettings(hidden=64).for_goals(6).hidden == 64  # an explicit width is kept
    with pytest.raises(ValueError, match=">= 0"):
        IQLSettings(hidden=-1).for_goals(2)
    maze = Maze.from_name("umaze", 2)
    with pytest.raises(ValueError, match="for_goals"):
        train_policy(maze, np.zeros((1, 2, 2), np.float32), np.zeros((1, 1, 2), np.float32),
                     np.zeros((1, 0), np.float32), np.zeros((1, 1, 1), np.float32), auto,
                     progress=False)
