"""Ratings tables to comparisons: pairs, ids, ties, joined texts, bad rows, user split."""

from __future__ import annotations

import json

import pytest

from vpl.cli import main
from vpl.data.ratings import RatingsConfig, from_ratings, load_ratings, ratings_to_comparisons
from vpl.data.schema import DataError

ITEMS = "item_id,text\n1,one\n2,two\n3,three\n4,four\n"


def _write(tmp_path, ratings: str, items: str | None = ITEMS):
    r = tmp_path / "ratings.csv"
    r.write_text(ratings)
    i = None
    if items is not None:
        i = tmp_path / "items.csv"
        i.write_text(items)
    return r, i


def test_pairs_keep_ids_drop_ties_and_join_texts(tmp_path):
    r, i = _write(tmp_path, "user_id,item_id,rating\nu,1,5\nu,2,3\nu,3,3\nu,4,-1\n")
    cfg = RatingsConfig(min_pairs_per_user=1)
    recs = ratings_to_comparisons(load_ratings(r, i, cfg), cfg)
    pairs = {(x.meta["chosen_id"], x.meta["rejected_id"]) for x in recs}
    # 4 items -> 6 pairs, minus the tie (2, 3)
    assert pairs == {("1", "2"), ("1", "3"), ("1", "4"), ("2", "4"), ("3", "4")}
    by_ids = {(x.meta["chosen_id"], x.meta["rejected_id"]): x for x in recs}
    assert by_ids[("1", "4")].chosen == "one" and by_ids[("1", "4")].rejected == "four"
    assert by_ids[("1", "4")].meta["chosen_rating"] == 5.0


def test_min_gap_max_pairs_min_pairs_and_repeats(tmp_path):
    rows = "user_id,item_id,rating\n" + "".join(
        f"a,{k},{v}\n" for k, v in ((1, 10), (2, 8), (3, 1), (4, 0))) + "b,1,1\nb,2,2\n" \
        + "c,1,0\nc,1,4\nc,2,1\n"  # c rated item 1 twice: mean 2 > 1
    r, i = _write(tmp_path, rows)
    cfg = RatingsConfig(min_gap=2.0, min_pairs_per_user=1)
    recs = ratings_to_comparisons(load_ratings(r, i, cfg), cfg)
    a = {(x.meta["chosen_id"], x.meta["rejected_id"]) for x in recs if x.user_id == "a"}
    assert a == {("1", "3"), ("1", "4"), ("2", "3"), ("2", "4")}  # gaps 2 and 1 dropped
    assert not [x for x in recs if x.user_id == "b"]  # gap 1 <= 2
    capped = RatingsConfig(max_pairs_per_user=2, min_pairs_per_user=1)
    recs = ratings_to_comparisons(load_ratings(r, i, capped), capped)
    assert sum(x.user_id == "a" for x in recs) == 2
    c = [x for x in recs if x.user_id == "c"]
    assert [(x.meta["chosen_id"], x.meta["rejected_id"]) for x in c] == [("1", "2")]
    strict = RatingsConfig(min_pairs_per_user=3)
    users = {x.user_id for x in ratings_to_comparisons(load_ratings(r, i, strict), strict)}
    assert users == {"a"}


def test_text_in_the_ratings_table_and_conflicting_texts(tmp_path):
    r, _ = _write(tmp_path, "user_id,item_id,rating,text\nu,1,1,x\nu,2,2,y\n", items=None)
    recs = ratings_to_comparisons(load_ratings(r), RatingsConfig(min_pairs_per_user=1))
    assert [(x.chosen, x.rejected) for x in recs] == [("y", "x")]
    r, _ = _write(tmp_path, "user_id,item_id,rating,text\nu,1,1,x\nv,1,2,z\n", items=None)
    with pytest.raises(DataError, match=r"ratings.csv:3: field 'text': .*two different texts"):
        load_ratings(r)


@pytest.mark.parametrize(("row", "field", "message"), [
    ("u,1,abc", "rating", "expected a number"),
    ("u,1,nan", "rating", "finite"),
    ("u,9,1", "item_id", "not in the items table"),
    (",1,1", "user_id", "missing field"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, row, field, message):
    r, i = _write(tmp_path, f"user_id,item_id,rating\nu,1,2\n{row}\n")
    with pytest.raises(DataError, match=rf"ratings.csv:3: field '{field}': .*{message}"):
        load_ratings(r, i)
    data = load_ratings(r, i, on_error="skip")
    assert data.report.kept == 1 and data.report.skipped == 1


def test_duplicate_item_ids_in_the_items_table(tmp_path):
    r, i = _write(tmp_path, "user_id,item_id,rating\nu,1,2\n", items="item_id,text\n1,a\n1,b\n")
    with pytest.raises(DataError, match=r"items.csv:3: field 'item_id': .*twice"):
        load_ratings(r, i)


def test_cli_writes_user_disjoint_train_and_test(tmp_path):
    rows = "uid,item_id,score\n" + "".join(
        f"user{u},{k},{(k * (u + 1)) % 7}\n" for u in range(10) for k in range(1, 5))
    r, i = _write(tmp_path, rows)
    out = tmp_path / "out"
    assert main(["data", "from-ratings", "--ratings", str(r), "--items", str(i),
                 "--user-field", "uid", "--rating-field", "score", "--min-pairs-per-user", "2",
                 "--test-users", "0.3", "--out", str(out)]) == 0
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (out / "test.jsonl").read_text().splitlines()]
    assert train and test
    assert not {x["user_id"] for x in train} & {x["user_id"] for x in test}
    assert {"chosen_id", "rejected_id"} <= set(train[0])
    counts = from_ratings(r, tmp_path / "again", i, RatingsConfig(
        user_field="uid", rating_field="score", min_pairs_per_user=2, test_users=0.3))
    assert counts["pairs_train"] == len(train) and counts["users_test"] == 3
