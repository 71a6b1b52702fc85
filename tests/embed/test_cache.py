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


def test_cache_stores_vectors_by_key_across_connections(tmp_path):
    from vpl.embed.cache import text_key

    cache = EmbeddingCache(tmp_path / "sub" / "emb.sqlite")  # the folder is created
    keys = [text_key("m", t) for t in ("a", "b")]
    assert len(cache) == 0 and cache.get(keys) == {}
    cache.put({keys[0]: np.arange(3, dtype=np.float64)})  # stored as float32
    cache.put({keys[0]: np.ones(3)})  # a key is replaced, not duplicated
    cache.close()
    again = EmbeddingCache(tmp_path / "sub" / "emb.sqlite")
    got = again.get([*keys, "absent"])
    assert list(got) == [keys[0]] and len(again) == 1
    assert got[keys[0]].dtype == np.float32
    np.testing.assert_array_equal(got[keys[0]], np.ones(3))
    many = {text_key("m", str(i)): np.full(2, i, dtype=np.float32) for i in range(1200)}
    again.put(many)  # more keys than one query holds
    assert len(again.get(list(many))) == 1200


def test_keys_separate_models_and_the_default_path_follows_the_environment(tmp_path, monkeypatch):
    from vpl.embed.cache import default_cache_path, text_key

    assert text_key("m1", "a") != text_key("m2", "a") and text_key("m1", "a") == text_key("m1", "a")
    assert text_key("m", "ab") != text_key("ma", "b")  # model and text do not run together
    monkeypatch.setenv("VPL_CACHE_DIR", str(tmp_path))
    assert default_cache_path() == tmp_path / "embeddings.sqlite"
