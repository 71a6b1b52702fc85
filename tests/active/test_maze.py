"""Simulated maze users for active query selection."""

from __future__ import annotations

import numpy as np

from vpl.active.maze import simulated_pools
from vpl.control import offline
from vpl.control.offline import MazeDataConfig


def test_simulated_pools_label_by_goal_distance() -> None:
    data = offline.generate(MazeDataConfig(goals=2, episodes=20, train_users_per_goal=2,
                                           test_users_per_goal=1, noise=0.0))
    users = simulated_pools(data, users_per_goal=3, pool_size=50, seed=0)
    assert [g for g, *_ in users] == [0, 0, 0, 1, 1, 1]
    for g, a, b, first_wins in users:
        assert a.shape == b.shape == (50, 2)
        closer = data.maze.distance(a, g) < data.maze.distance(b, g)
        assert np.array_equal(first_wins, closer)  # noise 0: labels are the true preferences
