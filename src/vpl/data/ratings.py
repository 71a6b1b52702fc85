"""Ratings to comparisons: the form most real per-user data comes in.

A ratings table has one row per (user, item, rating); the item's text lives in the same row
or in an items table joined on the item id. Within one user, every two items rated
differently form a comparison (the better-rated one chosen); ties, and gaps no larger than
`min_gap`, are dropped. At most `max_pairs_per_user` comparisons are sampled per user, users
with fewer than `min_pairs_per_user` are left out, and users are split into training and
unseen test users like the synthetic generators. Comparisons keep the item ids
(`chosen_id`, `rejected_id`) and the two ratings.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vpl.data.io import LoadReport, expand_paths, row_iterator
from vpl.data.schema import Comparison, DataError


@dataclass(frozen=True)
class RatingsConfig:
    """Field names of a ratings table (and items table) and how pairs are formed."""

    user_field: str = "user_id"
    """Field holding the user id."""
    item_field: str = "item_id"
    """Field holding the item id (in the ratings table and the items table)."""
    rating_field: str = "rating"
    """Field holding the numeric rating; higher is better."""
    text_field: str = "text"
    """Field holding the item's text (in the items table, or in the ratings table without one)."""
    prompt: str = ""
    """The prompt of every comparison (e.g. 'Which joke is funnier?'); empty for none."""
    min_gap: float = 0.0
    """Two items form a pair only when their ratings differ by more than this."""
    max_pairs_per_user: int = 60
    """At most this many pairs per user, sampled uniformly from all of the user's pairs (0: all)."""
    min_pairs_per_user: int = 12
    """Users with fewer pairs (after `min_gap` and ties) are left out."""
    test_users: float = 0.2
    """Fraction of users held out as unseen test users."""
    seed: int = 0
    """Seed of the pair sampling and the user split."""


@dataclass(frozen=True)
class Rating:
    """One user's rating of one item."""

    user: str
    item: str
    rating: float


@dataclass
class RatingsData:
    """Validated ratings and item texts, with what was read and skipped."""

    ratings: list[Rating]
    texts: dict[str, str]
    report: LoadReport = field(default_factory=LoadReport)


def _field(row: Any, name: str, source: str, line: int) -> Any:
    if not isinstance(row, dict):
        raise DataError(f"expected an object, got {type(row).__name__}", source=source,
                        line=line)
    if name not in row or row[name] is None or (isinstance(row[name], str)
                                                 and not row[name].strip()):
        raise DataError("missing field", source=source, line=line, field_name=name)
    return row[name]


def _id(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _rating(value: Any, name: str, source: str, line: int) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"expected a number, got {value!r}", source=source, line=line,
                        field_name=name) from None
    if not math.isfinite(x):
        raise DataError(f"expected a finite number, got {value!r}", source=source, line=line,
                        field_name=name)
    return x


def _rows(path: str | os.PathLike) -> Iterator[tuple[str, int, Any]]:
    for p in expand_paths(path):
        for line, row in row_iterator(p):
            yield str(p), line, row


def _read_items(path: str | os.PathLike, cfg: RatingsConfig) -> dict[str, str]:
    texts: dict[str, str] = {}
    for source, line, row in _rows(path):
        if isinstance(row, DataError):
            raise row
        item = _id(_field(row, cfg.item_field, source, line))
        text = _field(row, cfg.text_field, source, line)
        if not isinstance(text, str):
            raise DataError(f"expected a string, got {type(text).__name__}", source=source,
                            line=line, field_name=cfg.text_field)
        if item in texts:
            raise DataError(f"item id {item!r} appears twice", source=source, line=line,
                            field_name=cfg.item_field)
        texts[item] = text
    return texts


def load_ratings(ratings: str | os.PathLike, items: str | os.PathLike | None = None,
                 config: RatingsConfig | None = None, *, on_error: str = "abort"
                 ) -> RatingsData:
    """Read and validate a ratings table (CSV, Parquet, JSONL) and, if given, an items table
    with the texts. Bad rows raise a `DataError` naming file, line and field, or with
    `on_error="skip"` are dropped and counted."""
    cfg = config or RatingsConfig()
    texts = _read_items(items, cfg) if items is not None else {}
    report = LoadReport()
    out: list[Rating] = []
    for source, line, row in _rows(ratings):
        report.rows += 1
        try:
            if isinstance(row, DataError):
                raise row
            user = _id(_field(row, cfg.user_field, source, line))
            item = _id(_field(row, cfg.item_field, source, line))
            value = _rating(_field(row, cfg.rating_field, source, line), cfg.rating_field,
                            source, line)
            if items is None:
                text = _field(row, cfg.text_field, source, line)
                if texts.setdefault(item, str(text)) != str(text):
                    raise DataError(f"item {item!r} has two different texts", source=source,
                                    line=line, field_name=cfg.text_field)
            elif item not in texts:
                raise DataError(f"item id {item!r} is not in the items table {items}",
                                source=source, line=line, field_name=cfg.item_field)
            out.append(Rating(user, item, value))
            report.kept += 1
        except DataError as exc:
            if on_error == "abort":
                raise
            report.skip(exc)
    if not out:
        raise DataError("no valid ratings", source=str(ratings))
    return RatingsData(out, texts, report)


def ratings_to_comparisons(data: RatingsData, config: RatingsConfig | None = None
                           ) -> list[Comparison]:
    """Within-user comparisons of differently rated items (a user's repeated ratings of one
    item are averaged), at most `max_pairs_per_user` per user, users with fewer than
    `min_pairs_per_user` left out. Returns comparisons ordered by user."""
    cfg = config or RatingsConfig()
    rng = np.random.default_rng(cfg.seed)
    by_user: dict[str, dict[str, list[float]]] = {}
    for r in data.ratings:
        by_user.setdefault(r.user, {}).setdefault(r.item, []).append(r.rating)
    out: list[Comparison] = []
    for user in sorted(by_user):
        items = sorted(by_user[user])
        score = np.array([np.mean(by_user[user][i]) for i in items])
        a, b = np.triu_indices(len(items), k=1)
        keep = np.abs(score[a] - score[b]) > max(cfg.min_gap, 0.0)
        a, b = a[keep], b[keep]
        if len(a) < cfg.min_pairs_per_user:
            continue
        if cfg.max_pairs_per_user and len(a) > cfg.max_pairs_per_user:
            pick = rng.choice(len(a), size=cfg.max_pairs_per_user, replace=False)
            a, b = a[pick], b[pick]
        for i, j in zip(a.tolist(), b.tolist(), strict=True):
            win, lose = (i, j) if score[i] > score[j] else (j, i)
            if data.texts[items[win]] == data.texts[items[lose]]:
                continue  # two ids with one text cannot be told apart
            out.append(Comparison(
                user_id=user, prompt=cfg.prompt, chosen=data.texts[items[win]],
                rejected=data.texts[items[lose]],
                meta={"chosen_id": items[win], "rejected_id": items[lose],
                      "chosen_rating": float(score[win]), "rejected_rating": float(score[lose])}))
    return out


def split_users(records: list[Comparison], test_users: float, seed: int
                ) -> tuple[list[Comparison], list[Comparison]]:
    """(training users' records, unseen test users' records), users drawn at random."""
    users = sorted({r.user_id for r in records})
    rng = np.random.default_rng(seed + 1)
    n_test = int(round(test_users * len(users)))
    test = set(rng.permutation(users)[:n_test].tolist()) if n_test else set()
    return ([r for r in records if r.user_id not in test],
            [r for r in records if r.user_id in test])


def from_ratings(ratings: str | os.PathLike, out: str | os.PathLike,
                 items: str | os.PathLike | None = None, config: RatingsConfig | None = None,
                 *, on_error: str = "abort") -> dict[str, Any]:
    """Ratings table -> OUT/train.jsonl and OUT/test.jsonl (unseen users); returns counts."""
    from vpl.data.io import write_jsonl

    cfg = config or RatingsConfig()
    data = load_ratings(ratings, items, cfg, on_error=on_error)
    records = ratings_to_comparisons(data, cfg)
    if not records:
        raise DataError(f"no user has {cfg.min_pairs_per_user} or more pairs of differently "
                        "rated items", source=str(ratings))
    train, test = split_users(records, cfg.test_users, cfg.seed)
    out = Path(out)
    n_train = write_jsonl(out / "train.jsonl", train)
    n_test = write_jsonl(out / "test.jsonl", test)
    return {"ratings": data.report.kept, "skipped": data.report.skipped,
            "pairs_train": n_train, "pairs_test": n_test,
            "users_train": len({r.user_id for r in train}),
            "users_test": len({r.user_id for r in test}), "items": len(data.texts)}
