"""A real PostgreSQL server for the service tests, when one is installed (the trained run
they share is in tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

from vpl.serve.testing import postgres_available, throwaway_postgres


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
