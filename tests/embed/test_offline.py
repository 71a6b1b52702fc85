"""Offline defaults for the Hugging Face libraries: set only where the caller has not."""

from __future__ import annotations

import os

from vpl.embed.offline import OFFLINE_DEFAULTS, offline_defaults


def test_offline_defaults_fill_in_only_unset_variables(monkeypatch):
    for name in OFFLINE_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the caller's choice, kept
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "")  # set to any value, even empty, is kept
    offline_defaults()
    assert os.environ["HF_HUB_OFFLINE"] == "0"
    assert os.environ["TOKENIZERS_PARALLELISM"] == ""
    for name in ("TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        assert os.environ[name] == OFFLINE_DEFAULTS[name]
    offline_defaults()  # idempotent
    assert os.environ["HF_HUB_OFFLINE"] == "0"


def test_offline_defaults_set_everything_in_a_bare_environment(monkeypatch):
    for name in OFFLINE_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    offline_defaults()
    assert {name: os.environ[name] for name in OFFLINE_DEFAULTS} == OFFLINE_DEFAULTS
    assert OFFLINE_DEFAULTS["HF_HUB_OFFLINE"] == "1"
