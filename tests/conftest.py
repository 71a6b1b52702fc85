"""Shared fixtures: an isolated embedding cache, a small two-type preference problem, a stand-in
sentence encoder, and the benchmark scripts."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import pytest

os.environ.setdefault("VPL_CACHE_DIR", tempfile.mkdtemp(prefix="vpl-test-cache-"))

from vpl.embed.offline import offline_defaults  # noqa: E402

offline_defaults()  # before any test module imports a Hugging Face library

from vpl.data.pairs import PairData  # noqa: E402


def linear_type_weights(dim: int = 32) -> np.ndarray:
    """(2, dim) the two types' reward weights of `make_linear_users` (cosine -0.6)."""
    w0, u = np.random.default_rng(99).normal(size=(2, dim))
    u -= (u @ w0) / (w0 @ w0) * w0
    u *= np.linalg.norm(w0) / np.linalg.norm(u)
    return np.stack([w0, -0.6 * w0 + 0.8 * u])


def make_linear_users(n_users: int, pairs_per_user: int = 40, dim: int = 32, n_items: int = 400,
                      seed: int = 0, prefix: str = "u") -> PairData:
    """Users of two alternating types; type t prefers the item with the larger w_t . x."""
    rng = np.random.default_rng(seed)
    items = np.random.default_rng(1234).normal(size=(n_items, dim)).astype(np.float32)
    w = linear_type_weights(dim)
    user, chosen, rejected = [], [], []
    for u in range(n_users):
        t = u % 2
        for _ in range(pairs_per_user):
            a, b = rng.choice(n_items, 2, replace=False)
            if items[a] @ w[t] < items[b] @ w[t]:
                a, b = b, a
            user.append(u)
            chosen.append(a)
            rejected.append(b)
    return PairData(items=items, user=np.array(user), chosen=np.array(chosen),
                    rejected=np.array(rejected), users=[f"{prefix}{i}" for i in range(n_users)],
                    user_types=[f"type{u % 2}" for u in range(n_users)])


@pytest.fixture(scope="session")
def linear_users() -> tuple[PairData, PairData]:
    """(train: 100 users, test: 40 unseen users) of the two-type linear problem."""
    return make_linear_users(100, seed=0, prefix="train"), make_linear_users(40, seed=1,
                                                                              prefix="test")


@pytest.fixture(scope="session")
def linear_oracle():
    """oracle(data, u): user u's utility margin (chosen minus rejected) of every pair of `data`
    (users of `make_linear_users`, whose type is u % 2)."""
    w = linear_type_weights()

    def oracle(data: PairData, u: int) -> np.ndarray:
        return (data.items[data.chosen] - data.items[data.rejected]).astype(np.float64) @ w[u % 2]

    return oracle


@pytest.fixture
def load_benchmark():
    """Import a script of `benchmarks/` by name (they are not a package), e.g. "control_bench"."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


class FakeEncoder:
    """A stand-in for `SentenceEncoder` with what `embed_comparisons` calls (`encode`,
    `truncate_left`): a fixed random unit vector per distinct text, no model to load."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).normal(size=self.dim)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([self.vector(t) for t in texts], dtype=np.float32).reshape(-1, self.dim)

    def truncate_left(self, texts: Sequence[str]) -> list[str]:
        return list(texts)


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    """A `FakeEncoder` of 8-d vectors."""
    return FakeEncoder()
