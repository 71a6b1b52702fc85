"""95% confidence intervals of means and proportions, as every report states them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def t_halfwidth(values: Sequence[float] | np.ndarray) -> float:
    """Half-width of a 95% Student-t interval of the mean of the finite values (0 for < 2)."""
    v = np.asarray([x for x in np.asarray(values, dtype=float).ravel() if np.isfinite(x)])
    if len(v) < 2:
        return 0.0
    from scipy import stats

    return float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def mean_ci(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95% normal-approximation interval (lo, hi) of the mean along `axis` (many samples)."""
    m = values.mean(axis)
    n = values.shape[axis]
    half = 1.96 * values.std(axis, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(m)
    return m - half, m + half


def binomial_halfwidth(p: float, n: int) -> float:
    """Half-width of the 95% normal-approximation interval of a proportion p of n trials."""
    return float(1.96 * np.sqrt(p * (1 - p) / max(n, 1)))
