import gzip
import json

import pytest

from vpl.data.io import FieldMap, load_records, records_from_dataset, write_jsonl
from vpl.data.schema import Comparison, DataError

GOOD = {"user_id": "u1", "prompt": "p", "chosen": "yes", "rejected": "no"}


def _jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("row", "line", "field", "message"),
    [
        ({"user_id": "u", "prompt": "p", "chosen": "a"}, 2, "rejected", "missing field"),
        ({**GOOD, "chosen": "   "}, 2, "chosen", "empty text"),
        ({**GOOD, "rejected": "yes"}, 2, "rejected", "identical"),
        ({**GOOD, "prompt": 3.5}, 2, "prompt", "expected a string"),
        ("{not json", 2, None, "bad JSON"),
        ([1, 2], 2, None, "expected an object"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, row, line, field, message):
    path = _jsonl(tmp_path / "d.jsonl", [GOOD, row])
    with pytest.raises(DataError) as err:
        load_records(path)
    text = str(err.value)
    assert f"{path}:{line}" in text and message in text
    if field:
        assert f"field '{field}'" in text


def test_skip_mode_counts_and_keeps_good_rows(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [GOOD, "{oops", {**GOOD, "chosen": ""}, {**GOOD, "user_id": 7}])
    records, report = load_records(path, on_error="skip")
    assert [r.user_id for r in records] == ["u1", "7"]  # integer ids become strings
    assert report.skipped == 2 and report.rows == 4 and len(report.first_errors) == 2


def test_field_mapping_and_metadata(tmp_path):
    row = {"objective": "helpful", "prompt": "p", "good": "a", "bad": "b", "Index": 3}
    path = _jsonl(tmp_path / "d.jsonl", [row])
    (rec,), _ = load_records(path, FieldMap(user="objective", chosen="good", rejected="bad"))
    assert (rec.user_id, rec.chosen, rec.rejected, rec.meta) == ("helpful", "a", "b", {"Index": 3})


def test_no_prompt_field(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"user_id": "u", "chosen": "a", "rejected": "b"}])
    (rec,), _ = load_records(path, FieldMap(prompt=None))
    assert rec.prompt == ""


def test_gzip_csv_parquet_hf_and_directories(tmp_path):
    rows = [GOOD, {**GOOD, "user_id": "u2", "chosen": "maybe"}]
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows))
    import pandas as pd

    pd.DataFrame(rows).to_csv(tmp_path / "b.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "c.parquet")
    for name in ("a.jsonl.gz", "b.csv", "c.parquet"):
        recs, _ = load_records(tmp_path / name)
        assert [r.chosen for r in recs] == ["yes", "maybe"], name
    recs, _ = load_records(tmp_path)  # directory: every supported file
    assert len(recs) == 6

    import datasets

    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "hf"))
    recs, _ = load_records(tmp_path / "hf")
    assert len(recs) == 2
    recs, _ = records_from_dataset(ds)
    assert recs[1].user_id == "u2"


def test_csv_error_names_line(tmp_path):
    (tmp_path / "d.csv").write_text("user_id,prompt,chosen,rejected\nu,p,a,b\nu,p,same,same\n")
    with pytest.raises(DataError, match=r"d\.csv:3: field 'rejected'"):
        load_records(tmp_path / "d.csv")


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_records(tmp_path / "nope.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unsupported file type"):
        load_records(tmp_path / "x.txt")


def test_write_jsonl_round_trip(tmp_path):
    recs = [Comparison("u", "p", "a", "b", {"user_type": "t"})]
    write_jsonl(tmp_path / "o.jsonl", recs)
    back, _ = load_records(tmp_path / "o.jsonl")
    assert back == recs and back[0].meta == {"user_type": "t"}
