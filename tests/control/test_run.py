"""The control experiment's summaries."""

from __future__ import annotations

import pytest


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
