"""The benchmark report: aggregation over seeds and users."""

from __future__ import annotations

import numpy as np
import pytest

from vpl.experiments.report import aggregate
from vpl.stats import t_halfwidth as _ci


def test_aggregate_averages_seeds_and_users():
    def run(seed, accs):
        per_user = {f"u{i}": a for i, a in enumerate(accs)}
        summ = {"accuracy": float(np.mean(accs)), "accuracy_item_disjoint": float(np.mean(accs)),
                "worst_user_accuracy": min(accs), "user_accuracy_std": float(np.std(accs)),
                "nll": 0.5, "ece": 0.1, "per_user": per_user, "n_pairs": 10 * len(accs)}
        return {"dataset": "d", "model": "m", "seed": seed, "train_seconds": 1.0, "k_ref": 8,
                "curve": {"8": summ}}

    table = aggregate([run(0, [0.6, 0.8]), run(1, [0.8, 1.0])])
    cell = table["d"]["m"]["curve"]["8"]
    assert cell["accuracy"] == pytest.approx(0.8)
    assert cell["worst_user"] == pytest.approx(0.7)
    assert cell["ci_seeds"] > 0
    # two users: binomial CI over the 40 pairs of both seeds
    assert cell["ci_users"] == pytest.approx(1.96 * np.sqrt(0.8 * 0.2 / 40))

    many = aggregate([run(0, [0.5, 0.6, 0.7, 0.8, 0.9])])["d"]["m"]["curve"]["8"]
    assert many["ci_users"] == pytest.approx(_ci([0.5, 0.6, 0.7, 0.8, 0.9]))

