"""Command-line flags generated from config dataclasses, and configs built back from them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from vpl.cliargs import add_config_args, field_docs, from_args


@dataclass(frozen=True)
class _Options:
    """One field of each kind a config uses."""

    steps: int = 3
    """Number of
    steps."""
    rate: float = 0.5
    """Learning rate."""
    name: str = "adam"
    verbose: bool = False
    """Print more."""
    limit: int | None = None
    """Optional cap."""
    out_dir: str = "runs"
    """Where to write."""


def _parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t")
    add_config_args(p, _Options, **kw)
    return p


def test_field_docs_reads_the_docstring_under_each_field():
    assert field_docs(_Options) == {"steps": "Number of steps.", "rate": "Learning rate.",
                                    "verbose": "Print more.", "limit": "Optional cap.",
                                    "out_dir": "Where to write."}  # `name` has none
    assert field_docs(int) == {}  # no source to read


def test_flags_round_trip_every_kind_of_field():
    p = _parser(names={"out_dir": "out"})
    assert from_args(_Options, p.parse_args([])) == _Options()
    args = p.parse_args(["--steps", "7", "--rate", "0.1", "--name", "sgd", "--verbose",
                         "--limit", "5", "--out", "x"])
    assert from_args(_Options, args) == _Options(steps=7, rate=0.1, name="sgd", verbose=True,
                                                 limit=5, out_dir="x")
    assert from_args(_Options, p.parse_args(["--limit", "none", "--no-verbose"])) == _Options()
    assert isinstance(from_args(_Options, p.parse_args(["--steps", "2"])).steps, int)
    with pytest.raises(SystemExit):  # renamed: the field's own flag does not exist
        p.parse_args(["--out-dir", "x"])
    with pytest.raises(SystemExit):  # a typed flag rejects a bad value
        p.parse_args(["--steps", "many"])


def test_skip_defaults_choices_extra_and_help():
    p = _parser(skip=("name",), defaults={"steps": 9}, choices={"rate": (0.1, 0.5)})
    with pytest.raises(SystemExit):
        p.parse_args(["--name", "sgd"])
    with pytest.raises(SystemExit):
        p.parse_args(["--rate", "0.3"])
    args = p.parse_args(["--rate", "0.1"])
    assert from_args(_Options, args) == _Options(steps=9, rate=0.1)
    assert from_args(_Options, args, name="lion").name == "lion"  # fields without a flag
    text = " ".join(p.format_help().split())
    assert "--out-dir" in text and "Where to write. (default: runs)" in text
    assert "Number of steps. (default: 9)" in text


def test_flags_of_two_configs_do_not_mix():
    @dataclass(frozen=True)
    class Other:
        steps: int = 100

    p = _parser()
    add_config_args(p, Other, names={"steps": "other-steps"})
    args = p.parse_args(["--steps", "4", "--other-steps", "40"])
    assert from_args(_Options, args).steps == 4 and from_args(Other, args) == Other(40)
