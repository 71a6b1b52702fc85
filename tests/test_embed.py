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


def test_layer_pooling_matches_a_manual_forward_pass(tmp_path):
    import torch

    from vpl.embed import DEFAULT_MODEL, LAYERS_SUFFIX

    texts = ["a short answer.", "A much longer and more formal answer, with an example: see the "
             "attached table for the details of every step.", "a short answer."]
    enc = SentenceEncoder(DEFAULT_MODEL + LAYERS_SUFFIX,
                          cache=EmbeddingCache(tmp_path / "emb.sqlite"), progress=False)
    vecs = enc.encode(texts)
    bert = enc.model[0].auto_model
    n_states = bert.config.num_hidden_layers + 1
    width = bert.config.hidden_size
    assert vecs.shape == (3, n_states * width) and enc.computed == 2
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vecs[0], vecs[2])
    # each text alone, no padding: token mean of every hidden state, each unit-norm
    with torch.no_grad():
        for i in (0, 1):
            batch = enc.model.tokenizer([texts[i]], return_tensors="pt")
            states = bert(**batch, output_hidden_states=True).hidden_states
            want = torch.cat([torch.nn.functional.normalize(h[0].mean(0), dim=0)
                              for h in states]) / n_states**0.5
            np.testing.assert_allclose(vecs[i], want.numpy(), atol=1e-5)
    # a separate cache identity: the sentence embedding of the same text is not reused
    plain = SentenceEncoder(cache=EmbeddingCache(tmp_path / "emb.sqlite"), progress=False)
    assert plain.encode(texts[:1]).shape == (1, width) and plain.computed == 1
    assert plain.model_id + LAYERS_SUFFIX == enc.model_id
