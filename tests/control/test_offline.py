"""Offline maze data: labels and the Bayes goal posterior."""

from __future__ import annotations

import numpy as np
import pytest

from tests.control.helpers import tiny_maze
from vpl.control.offline import goal_posterior, identification_rate, label_pairs


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
