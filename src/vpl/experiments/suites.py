"""Benchmark suites: datasets x models x seeds, and the model variants they compare."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vpl.models.presets import PRESETS

MODEL_VARIANTS = PRESETS
"""Bench model names: the presets of `vpl.models.presets`."""

ON_REQUEST = ("vpl-amortized", "vpl-mean", "vpl-untempered", "vpl-concat", "vpl-paper", "vpl-linear", "vpl-mlp")
"""Variants that run only when `--models` names them. `vpl-concat` is among them: it shows the
paper's formulation collapsing (docs/results.md) and costs a tenth of the full suite's training
time."""

ALL_MODELS = tuple(m for m in MODEL_VARIANTS if m not in ON_REQUEST)
"""Every suite's default models."""

MIN_USERS_FOR_CI = 5
"""With fewer users (relabeled HH-RLHF has two), CIs are binomial over pairs instead."""


@dataclass(frozen=True)
class BenchData:
    """A dataset of a suite: a generator (`pets`, `personas`), the relabeled HH-RLHF files
    (`hh`), or real per-user data under the data folder: a comparisons file (`comparisons`)
    or a ratings table with an items table (`ratings`), both split into training and unseen
    test users."""

    name: str
    kind: str  # "pets" | "personas" | "hh" | "comparisons" | "ratings"
    variant: str = ""
    size: dict[str, int] = field(default_factory=dict)
    source: str = ""
    """Real data: the file, relative to the data folder (`$VPL_DATA_DIR`)."""
    items: str = ""
    """Ratings: the items table, relative to the data folder."""
    options: dict[str, Any] = field(default_factory=dict)
    """Ratings: `vpl.data.ratings.RatingsConfig` fields (field names, prompt)."""


REAL_LIMITS = {"min_pairs_per_user": 12, "max_pairs_per_user": 60}
"""How real per-user data is sampled: users with at least 12 pairs, at most 60 pairs each
(drawn at random), users split 80/20 into training and unseen test users."""


@dataclass(frozen=True)
class Suite:
    """Datasets x models x seeds, the context sizes scored and training overrides."""

    name: str
    datasets: tuple[BenchData, ...]
    models: tuple[str, ...] = ALL_MODELS
    seeds: int = 3
    ks: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
    train: dict[str, Any] = field(default_factory=dict)


_SMALL = {"users_per_type": 30, "test_users_per_type": 10, "pairs_per_user": 40}
SUITES: dict[str, Suite] = {
    "tiny": Suite(
        "tiny",
        (BenchData("personas-2-tiny", "personas", "2",
                   {"users_per_type": 6, "test_users_per_type": 3, "pairs_per_user": 12}),),
        models=("btl", "vpl", "btl-head", "oracle-type"), seeds=1, ks=(0, 2, 4),
        train={"epochs": 2}),
    "quick": Suite(
        "quick",
        (BenchData("pets-controversial", "pets", "controversial", _SMALL),
         BenchData("personas-4", "personas", "4", _SMALL),
         BenchData("personas-continuous", "personas", "continuous",
                   _SMALL)),
        seeds=1),
    "hh": Suite("hh", (BenchData("hh-relabeled", "hh"),), seeds=1, ks=(0, 4, 8, 16)),
    "real": Suite(
        "real",
        (BenchData("ukpconvarg", "comparisons", size=REAL_LIMITS,
                   source="ukpconvarg_dev/comparisons.jsonl.gz"),
         BenchData("jester", "ratings", size={**REAL_LIMITS, "max_users": 1500},
                   source="jester/ratings.csv.gz", items="jester/jokes.csv",
                   options={"item_field": "joke_id", "prompt": "Which joke is funnier?"}),
         BenchData("hh-relabeled", "hh")),
        seeds=3),
    "full": Suite(
        "full",
        (BenchData("pets-full", "pets", "full"),
         BenchData("pets-controversial", "pets", "controversial"),
         BenchData("personas-2", "personas", "2"),
         BenchData("personas-4", "personas", "4"),
         BenchData("personas-continuous", "personas", "continuous"),
         BenchData("hh-relabeled", "hh")),
        seeds=3),
}
