"""The sentence encoder: caching switched off, and layer pooling."""

from __future__ import annotations

import numpy as np

from vpl.embed import SentenceEncoder
from vpl.embed.cache import EmbeddingCache


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


def test_split_response_strips_a_repeated_prompt_and_finds_a_shared_dialogue():
    from vpl.embed.encoder import split_response

    prompt = "\n\nHuman: how do I boil an egg?"
    assert split_response(prompt, prompt + "\n\nAssistant: Ten minutes.",
                          prompt + "\n\nAssistant: Ask someone else.") == (
        prompt, "Ten minutes.", "Ask someone else.")
    # no prompt: the shared dialogue before the last assistant turn becomes the prompt
    p, c, r = split_response("", prompt + "\n\nAssistant: Ten minutes.",
                             prompt + "\n\nAssistant: No.")
    assert (p.strip(), c, r) == (prompt.strip(), "Ten minutes.", "No.")
    assert split_response("q", "a", "b") == ("q", "a", "b")  # nothing to strip
    assert split_response("", "yes", "no") == ("", "yes", "no")


def test_split_pooling():
    from vpl.embed import DEFAULT_ENCODER, DEFAULT_MODEL
    from vpl.embed.encoder import split_pooling

    assert split_pooling(DEFAULT_ENCODER) == (DEFAULT_MODEL, "layers")
    assert split_pooling("some/model") == ("some/model", "sentence")


def test_embed_comparisons_embeds_each_item_once(fake_encoder):
    from vpl.data.schema import Comparison
    from vpl.embed import embed_comparisons

    recs = [Comparison("bob", "q1", "a", "b", {"user_type": "t1"}),
            Comparison("amy", "q1", "b", "c", {"user_type": "t0"}),
            Comparison("amy", "", "a", "d")]
    data = embed_comparisons(recs, fake_encoder)
    assert data.users == ["amy", "bob"] and data.user.tolist() == [1, 0, 0]
    assert data.user_types == ["t0", "t1"]
    assert data.pair_keys == [r.key for r in recs]
    # items are (prompt, response) pairs: ("q1", "b") is shared, ("", "a") differs from ("q1", "a")
    assert len(data.items) == 5 and data.dim == 16
    assert data.rejected[0] == data.chosen[1]
    v = fake_encoder.vector
    np.testing.assert_allclose(data.items[data.chosen[0]], np.concatenate([v("q1"), v("a")]))
    np.testing.assert_allclose(data.items[data.chosen[2]], np.concatenate([np.zeros(8), v("a")]))
    # the same response under two prompts is one response for item-disjointness
    assert data.item_keys[data.chosen[0]] == data.item_keys[data.chosen[2]]
    assert fake_encoder.calls[0].count("q1") == 1  # each distinct prompt embedded once
    assert embed_comparisons(recs, fake_encoder, users=["bob", "amy"]).user.tolist() == [0, 1, 1]
