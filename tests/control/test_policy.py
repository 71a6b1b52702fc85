"""Latent-conditioned IQL policies: n-step returns, latent scaling, save/load, width."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.control.helpers import tiny_maze
from vpl.control.maze import Maze
from vpl.control.policy import (
    IQLSettings,
    latent_projection,
    load_policy,
    n_step_returns,
    save_policy,
    train_policy,
)


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
