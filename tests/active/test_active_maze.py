"""Active query selection in the maze: `vpl active` on a control run records policy success."""

from __future__ import annotations

import json

import numpy as np

from vpl.active.maze import simulated_pools
from vpl.control import offline
from vpl.control.offline import MazeDataConfig

TINY = ["--iql-steps", "20", "--eval-every", "0", "--reward-epochs", "1", "--episodes", "20",
        "--users-per-goal", "12", "--quiet", "--no-plots"]


def test_simulated_pools_label_by_goal_distance() -> None:
    data = offline.generate(MazeDataConfig(goals=2, episodes=20, train_users_per_goal=2,
                                           test_users_per_goal=1, noise=0.0))
    users = simulated_pools(data, users_per_goal=3, pool_size=50, seed=0)
    assert [g for g, *_ in users] == [0, 0, 0, 1, 1, 1]
    for g, a, b, first_wins in users:
        assert a.shape == b.shape == (50, 2)
        closer = data.maze.distance(a, g) < data.maze.distance(b, g)
        assert np.array_equal(first_wins, closer)  # noise 0: labels are the true preferences


def test_cli_on_control_run(tmp_path, capsys) -> None:
    from vpl.cli import main

    run = tmp_path / "run"
    assert main(["control", "run", "--goals", "2", "--reward", "vpl-spo", "--out", str(run),
                 *TINY]) == 0
    capsys.readouterr()
    for strategy in ("random", "info-gain", "paper"):
        assert main(["active", "--run", str(run), "--strategy", strategy, "--budget", "3",
                     "--users-per-goal", "2", "--episodes", "2", "--json", "--quiet"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert len(out["curve"]) == 4
        assert all(0.0 <= v <= 1.0 for v in out["curve"])
        assert out["config"]["metric"] == "success"
    stored = json.loads((run / "active" / "active.json").read_text())
    assert set(stored["strategies"]) == {"random", "info-gain", "paper"}
    assert (run / "active" / "active_curves.png").stat().st_size > 0
