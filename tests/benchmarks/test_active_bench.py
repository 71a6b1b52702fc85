"""The text active benchmark's report: one row per strategy run, queries needed per seed."""

import argparse

import numpy as np


def test_report_rows_follow_the_strategies_run(load_benchmark) -> None:
    ab = load_benchmark("active_bench")
    budget, users = 8, 5
    n = np.arange(budget + 1)
    ramp = np.tile(0.6 + 0.03 * n, (users, 1))  # random: 0.84 after 8 answers
    jump = np.tile(np.where(n >= 3, 0.9, 0.6), (users, 1))  # reaches it after 3
    res = {"users": "continuous",
           "per_user": {"random": np.stack([ramp, ramp]), "epig": np.stack([jump, ramp])},
           "entropy_corr": {"random": [0.1, 0.2], "epig": [-0.1, -0.3]},
           "pred_corr": {"random": [-0.2, -0.2], "epig": [-0.4, -0.4]},
           "timing": {"random": [0.1], "epig": [20.0]}, "val_acc": [0.9, 0.8]}
    args = argparse.Namespace(model="low-rank", option=[], context_size=16, seeds=2, eval_pairs=16, epochs=60,
                              patience=20, populations="continuous",
                              strategies=["random", "epig"], budget=budget, samples=16,
                              wall=12.0, pool="own", pool_size=1000)
    text = ab.report([res], args)
    assert "--strategies random epig" in text and "--model low-rank" in text
    assert "latent bank" in text and "Laplace" not in text  # low-rank's default inference
    assert "split into 16 evaluation pairs" in text
    args.pool = "shared"
    shared = ab.report([res], args)
    assert "--pool shared --pool-size 1000" in shared and "1000 pairs drawn per user" in shared
    args.pool = "own"
    args.option = ["inference=map"]
    assert "Laplace approximation" in ab.report([res], args)
    rows = [line for line in text.splitlines() if line.startswith("| epig |")]
    assert len(rows) == 2 and not any(line.startswith("| info-gain |")
                                      for line in text.splitlines())
    # seed 0 reaches random's 0.84 after 3 answers, seed 1 (a ramp) after 8; the
    # seed-averaged curve, (0.9 + 0.6 + 0.03 n) / 2, at n = 6
    assert rows[1].startswith("| epig | 6 | [3, 8] | 20.0 | -0.200 | -0.400 |")
