"""The record type and the data error: content keys, equality, flat dicts, messages."""

from __future__ import annotations

import pytest

from vpl.data.schema import Comparison, DataError


def test_key_is_a_content_hash_of_the_four_fields():
    a = Comparison("u", "p", "yes", "no", {"n": 1})
    assert a.key == Comparison("u", "p", "yes", "no").key  # metadata is not content
    assert len(a.key) == 20 and int(a.key, 16) >= 0
    others = [Comparison("v", "p", "yes", "no"), Comparison("u", "q", "yes", "no"),
              Comparison("u", "p", "yes!", "no"), Comparison("u", "p", "yes", "no!"),
              Comparison("u", "p", "no", "yes")]
    assert len({a.key, *(o.key for o in others)}) == 6
    assert Comparison("ab", "c", "x", "y").key != Comparison("a", "bc", "x", "y").key


def test_equality_ignores_metadata_and_to_dict_keeps_the_core_fields_first():
    a = Comparison("u", "p", "yes", "no", {"user_type": "t", "user_id": "spoof"})
    assert a == Comparison("u", "p", "yes", "no") and hash(a) == hash(Comparison("u", "p", "yes", "no"))
    d = a.to_dict()
    assert list(d) == ["user_id", "prompt", "chosen", "rejected", "user_type"]
    assert d["user_id"] == "u"  # metadata never overwrites a core field


def test_data_error_names_the_source_line_and_field():
    err = DataError("missing field", source="d.jsonl", line=3, field_name="chosen")
    assert str(err) == "d.jsonl:3: field 'chosen': missing field"
    assert (err.source, err.line, err.field_name) == ("d.jsonl", 3, "chosen")
    assert str(DataError("bad JSON", source="d.jsonl")) == "d.jsonl: bad JSON"
    assert str(DataError("oops")) == "<data>: oops"
    with pytest.raises(ValueError):
        raise err
