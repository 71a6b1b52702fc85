"""Shared fixtures: an isolated embedding cache, a small two-type preference problem, a stand-in
sentence encoder, the benchmark scripts, a small Pets data set with a VPL run trained on it,
and a tiny causal LM built from a config."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("VPL_CACHE_DIR", tempfile.mkdtemp(prefix="vpl-test-cache-"))

from vpl.embed.offline import offline_defaults  # noqa: E402

offline_defaults()  # before any test module imports a Hugging Face library

from vpl.cli import main  # noqa: E402
from vpl.data.io import write_jsonl  # noqa: E402
from vpl.data.pairs import PairData  # noqa: E402
from vpl.data.pets import generate_pets  # noqa: E402


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


WORDS = ["the", "a", "ferret", "cat", "dog", "likes", "eats", "sleeps", "runs", "quickly", "slowly", "happy", "very", "small", "big", "food", "water", "toy", "house", "garden", "and", "with"]
"""The vocabulary of `tiny_lm`."""


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """A 2-block Llama with a word-level tokenizer, saved as a local model folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "</s>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   eos_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=64, pad_token_id=1, eos_token_id=2,
                      bos_token_id=2)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).eval().save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def pets(tmp_path_factory) -> Path:
    """A small Pets controversial set: train.jsonl and test.jsonl (new users)."""
    d = tmp_path_factory.mktemp("pets")
    train, test = generate_pets("controversial", seed=0, users_per_type=10,
                                test_users_per_type=3, pairs_per_user=16)
    write_jsonl(d / "train.jsonl", train)
    write_jsonl(d / "test.jsonl", test)
    return d


@pytest.fixture(scope="session")
def run_dir(pets, tmp_path_factory) -> Path:
    """A VPL run trained on `pets` through the CLI (a few epochs)."""
    run = tmp_path_factory.mktemp("run") / "vpl"
    assert main(["train", "--data", str(pets / "train.jsonl"), "--model", "vpl", "--out",
                 str(run), "--epochs", "6", "--quiet"]) == 0
    return run
