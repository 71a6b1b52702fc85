"""The active maze benchmark's report: curves, answers needed and the identification line."""

import argparse

import numpy as np


def test_report_tables_and_identification(load_benchmark) -> None:
    mb = load_benchmark("active_maze_bench")
    budget = 8
    # 4 users; success after n answers: random climbs by 0.1 per answer, the others jump
    ramp = np.minimum(0.2 + 0.1 * np.arange(budget + 1), 1.0)
    jump = np.where(np.arange(budget + 1) >= 2, 1.0, 0.2)
    run = {"seed": 0, "control_success": 0.8,
           "identification": {"queries": 8, "test_users": {"A": 1.0, "B": 0.5},
                              "expected": {"A": 0.9, "B": 0.8}},
           "success": {"random": np.tile(ramp, (4, 1)).tolist(),
                       "info-gain": np.tile(jump, (4, 1)).tolist(),
                       "paper": np.tile(ramp, (4, 1)).tolist()},
           "entropy_corr": {s: -0.1 for s in mb.STRATEGIES},
           "select_ms": {s: 1.0 for s in mb.STRATEGIES}}
    args = argparse.Namespace(goals=2, budget=budget, iql_steps=100, jobs=1,
                              users_per_goal=2, pool=16, episodes=1, reward="vpl-spo")
    text = mb.report([run], args, 12.0, commit="abc1234")
    assert "commit abc1234" in text
    # random reaches 1.0 after 8 answers; info-gain after 2
    assert "random's success after 8 (100.0%): random 8, info-gain 2, paper 8." in text
    assert "for A 90%, B 80% of users (mean 85.0%)" in text
