"""A small trained VPL run and a service over it, shared by the service tests; a real
PostgreSQL server when one is installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vpl.cli import main
from vpl.data.io import write_jsonl
from vpl.data.pets import generate_pets
from vpl.serve.testing import postgres_available, throwaway_postgres


@pytest.fixture(scope="package")
def pets(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pets")
    train, test = generate_pets("controversial", seed=0, users_per_type=10,
                                test_users_per_type=3, pairs_per_user=16)
    write_jsonl(d / "train.jsonl", train)
    write_jsonl(d / "test.jsonl", test)
    return d


@pytest.fixture(scope="package")
def run_dir(pets, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "vpl"
    assert main(["train", "--data", str(pets / "train.jsonl"), "--model", "vpl", "--out",
                 str(run), "--epochs", "6", "--quiet"]) == 0
    return run


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1 (skipped when PostgreSQL is not installed,
    unless VPL_TEST_POSTGRES=required, as in CI)."""
    if not postgres_available():
        if os.environ.get("VPL_TEST_POSTGRES") == "required":
            pytest.fail("PostgreSQL is required (VPL_TEST_POSTGRES=required) but not installed")
        pytest.skip("PostgreSQL is not installed")
    pytest.importorskip("psycopg")
    with throwaway_postgres() as url:
        yield url
