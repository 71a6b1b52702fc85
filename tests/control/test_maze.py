"""Maze env, shortest paths, labels, SPO scaling and policy save/load."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from vpl.control.maze import Maze, MazeEnv, bfs_distances, parse_layout
from vpl.control.offline import goal_posterior, identification_rate, label_pairs
from vpl.control.policy import (
    IQLSettings,
    latent_projection,
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


def test_goal_posterior_closed_form_and_ties() -> None:
    maze = tiny_maze()  # goal A at cell (1, 1), goal B at (1, 3)
    near_a, near_b = np.array([[1.5, 1.5]]), np.array([[3.5, 1.5]])
    mid, low = np.array([[2.5, 2.5]]), np.array([[2.5, 2.8]])  # low: farther from both goals
    # user 0: one label for A (near_a over near_b); user 1: the opposite label;
    # user 2: a pair both goals rank the same way, which says nothing about the goal
    chosen = np.concatenate([near_a, near_b, mid], dtype=np.float32)
    rejected = np.concatenate([near_b, near_a, low], dtype=np.float32)
    post = goal_posterior(maze, np.array([0, 1, 2]), chosen, rejected, 0.1, 3)
    np.testing.assert_allclose(post, [[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]], atol=1e-9)
    # two agreeing labels: odds (0.9 / 0.1) ** 2
    post2 = goal_posterior(maze, np.array([0, 0]), chosen[[0, 0]], rejected[[0, 0]], 0.1, 1)
    np.testing.assert_allclose(post2[0, 0], 81 / 82, atol=1e-9)
    # MAP accuracy per goal, a tie counted as a coin flip
    rate = identification_rate(post, np.array([0, 1, 1]))
    np.testing.assert_allclose(rate, [1.0, 0.75])
    with pytest.raises(ValueError, match="noise"):
        goal_posterior(maze, np.array([0]), chosen[:1], rejected[:1], 0.5, 1)


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
    small = IQLSettings(steps=1, batch_size=8, hidden=16, latent_scale="global")
    pol = train_policy(maze, obs, acts, lat, rew, small, progress=False)
    np.testing.assert_allclose(pol.z_shift, lat.mean(0), atol=1e-6)
    # one common scale: the noise dimension stays small
    assert pol.z_proj[0, 0] == pol.z_proj[1, 1] and pol.z_proj[0, 1] == 0
    assert np.abs(pol.latent_input(lat)[:, 1]).max() < 0.05
    per_dim = train_policy(maze, obs, acts, lat, rew,
                           dataclasses.replace(small, latent_scale="per-dim"), progress=False)
    np.testing.assert_allclose(per_dim.latent_input(lat).std(0), 1.0, atol=0.1)
    with pytest.raises(ValueError, match="latent_scale"):
        train_policy(maze, obs, acts, lat, rew, dataclasses.replace(small, latent_scale="x"),
                     progress=False)


def test_latent_whitening_keeps_the_strong_components() -> None:
    rng = np.random.default_rng(0)
    # three clusters in the plane spanned by (1, 1, 0) and (1, -1, 0): one long, one short
    # direction (8 % of the variance); the third dimension is noise 100x smaller
    base = np.array([[3.0, 3.0, 0.0], [-3.0, -3.0, 0.0], [1.5, -1.5, 0.0]])
    lat = np.repeat(base, 50, 0) + rng.normal(0, [0.01, 0.01, 0.01], (150, 3))
    shift, proj = latent_projection(lat, "whiten")
    assert proj.shape == (3, 2)  # the noise dimension is dropped
    x = (lat - shift) @ proj
    np.testing.assert_allclose(np.cov(x, rowvar=False), np.eye(2), atol=1e-3)  # white
    # the short direction that tells cluster 3 apart is as wide as the long one
    spread = np.abs(x[100:].mean(0) - x[:100].mean(0))
    assert spread.max() > 1.0
    # `global` keeps all three dimensions at one scale: cluster 3 stays close to the centre
    g_shift, g_proj = latent_projection(lat, "global")
    assert g_proj.shape == (3, 3)
    assert np.linalg.norm((base[2] - g_shift) @ g_proj) < 0.5 * np.linalg.norm(
        (base[0] - g_shift) @ g_proj)
    _, one_proj = latent_projection(lat[:1], "whiten")  # a single latent: unchanged
    np.testing.assert_array_equal(one_proj, np.eye(3))
    with pytest.raises(ValueError, match="latent_scale"):
        latent_projection(lat, "pca")


def test_policy_save_load_round_trip(tmp_path) -> None:
    maze = tiny_maze()
    rng = np.random.default_rng(0)
    obs = np.stack([maze.sample_free(6, rng) for _ in range(4)])  # (E=4, L+1=6, 2)
    acts = rng.uniform(-1, 1, (4, 5, 2)).astype(np.float32)
    lat = np.eye(2, dtype=np.float32)
    rew = rng.random((2, 4, 5)).astype(np.float32)
    for how in ("global", "whiten"):
        pol = train_policy(maze, obs, acts, lat, rew,
                           IQLSettings(steps=3, batch_size=8, hidden=16, latent_scale=how),
                           progress=False)
        save_policy(pol, tmp_path / how)
        again = load_policy(tmp_path / how)
        pos = maze.sample_free(5, rng)
        z = np.repeat(lat[:1], 5, 0)
        np.testing.assert_allclose(pol.act(pos, z), again.act(pos, z), atol=1e-6)
        np.testing.assert_array_equal(pol.z_proj, again.z_proj)
        assert again.latent_dim == 2 and again.maze.goals == maze.goals
    # a policy saved before the projection (per-dimension `z_scale`) still loads
    meta = json.loads((tmp_path / "global" / "policy.json").read_text())
    proj = np.array(meta.pop("z_proj"))
    meta["z_scale"] = (1.0 / np.diag(proj)).tolist()
    (tmp_path / "global" / "policy.json").write_text(json.dumps(meta))
    old = load_policy(tmp_path / "global")
    np.testing.assert_allclose(old.z_proj, proj, rtol=1e-6)


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


def test_mean_identification_averages_goal_by_goal() -> None:
    from vpl.control.run import mean_identification

    a = {"queries": 8, "test_users": {"A": 1.0, "B": 0.5}, "expected": {"A": 0.9, "B": 0.7}}
    b = {"queries": 8, "test_users": {"A": 0.5, "B": 1.0}, "expected": {"A": 0.7, "B": 0.9}}
    got = mean_identification([a, b])
    assert got["queries"] == 8
    assert got["test_users"] == pytest.approx({"A": 0.75, "B": 0.75})
    assert got["expected"] == pytest.approx({"A": 0.8, "B": 0.8})
    with pytest.raises(ValueError, match="no identification"):
        mean_identification([])
