"""The embedding cache: a second pass over the same texts computes nothing."""

from __future__ import annotations

import numpy as np

from vpl.embed import SentenceEncoder
from vpl.embed.cache import EmbeddingCache


def test_empty_cache_is_used_and_filled(tmp_path):
    texts = ["a cat sleeps on the mat", "dogs need daily walks", "a cat sleeps on the mat"]
    first = SentenceEncoder(cache=EmbeddingCache(tmp_path / "emb.sqlite"), progress=False)
    a = first.encode(texts)
    assert first.computed == 2  # duplicates are embedded once
    assert len(first.cache) == 2

    second = SentenceEncoder(cache=EmbeddingCache(tmp_path / "emb.sqlite"), progress=False)
    b = second.encode(texts)
    assert second.computed == 0
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert second._model is None  # served from disk without loading the model


def test_cache_disabled_recomputes(tmp_path):
    enc = SentenceEncoder(cache=False, progress=False)
    enc.encode(["one sentence"])
    enc.encode(["one sentence"])
    assert enc.computed == 2
