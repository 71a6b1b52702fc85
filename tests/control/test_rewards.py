"""Maze reward models: SPO scaling, seeded training, VPL variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vpl.control.maze import Maze
from vpl.control.rewards import LearnedReward, spo_reward
from vpl.models import build


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
