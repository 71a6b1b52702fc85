"""The ONNX backends of the sentence encoder: names, the export made once (and never left
half-written), vectors close to the PyTorch encoder's on any batch shape, and a cache identity
of their own."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the ONNX backends need `pip install vpl-rlhf[fast]`")
pytest.importorskip("onnxruntime", reason="the ONNX backends need `pip install vpl-rlhf[fast]`")

from vpl.embed import DEFAULT_ENCODER, DEFAULT_MODEL, SentenceEncoder  # noqa: E402
from vpl.embed.cache import EmbeddingCache  # noqa: E402
from vpl.embed.encoders import make_encoder  # noqa: E402
from vpl.embed.quantized import GRAPH, META, OnnxEncoder, split_backend  # noqa: E402

TEXTS = ["a short answer.",
         "A much longer and more formal answer, with an example: see the attached table for the "
         "details of every step, then ask again if anything is unclear.",
         "Sure! Here are three ideas: a walk, a book, or a call with a friend.",
         "no"]
"""Of several lengths, the longest longer than the batch the graph is traced with."""


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A models folder shared by this module's encoders (each graph is exported once)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """The PyTorch encoder's vectors of TEXTS, by encoder name."""
    return {name: SentenceEncoder(name, cache=False, progress=False).encode(TEXTS)
            for name in (DEFAULT_ENCODER, DEFAULT_MODEL)}


def test_names():
    assert split_backend("minilm+onnx-int8") == ("minilm", "onnx-int8")
    assert split_backend(DEFAULT_ENCODER + "+onnx") == (DEFAULT_ENCODER, "onnx")
    assert split_backend(DEFAULT_ENCODER) == (DEFAULT_ENCODER, None)
    assert split_backend("smollm2#mean@-6+lora=runs/a") == ("smollm2#mean@-6+lora=runs/a", None)
    enc = make_encoder("minilm+onnx-int8", cache=False)
    assert isinstance(enc, OnnxEncoder) and enc.pooling == "layers"
    assert enc._model is None  # nothing exported or loaded before the first text
    with pytest.raises(ValueError, match=r"unknown encoder backend 'onnx-int4'.*\+onnx-int8"):
        make_encoder("minilm+onnx-int4")
    with pytest.raises(ValueError, match="not causal LMs"):
        make_encoder("smollm2+onnx-int8")
    with pytest.raises(ValueError, match="runs on the CPU"):
        make_encoder("minilm+onnx-int8", device="cuda")


def test_the_float32_graph_gives_the_pytorch_vectors_on_any_batch_shape(root, reference):
    enc = OnnxEncoder(DEFAULT_ENCODER, backend="onnx", cache=False, progress=False, root=root)
    batch = enc.encode(TEXTS)
    np.testing.assert_allclose(batch, reference[DEFAULT_ENCODER], atol=1e-4)
    np.testing.assert_allclose(enc.encode(TEXTS[1:2])[0], batch[1], atol=1e-5)  # no padding
    assert enc.max_tokens == 256 and enc.truncate_left(["word " * 400])[0].startswith("word")


@pytest.mark.parametrize("name", [DEFAULT_ENCODER, DEFAULT_MODEL])
def test_int8_vectors_are_close_to_the_float32_ones(root, reference, name):
    enc = OnnxEncoder(name, cache=False, progress=False, root=root)
    vecs = enc.encode(TEXTS)
    assert vecs.shape == reference[name].shape and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert cosines(vecs, reference[name]).min() > 0.95
    assert not np.allclose(vecs, reference[name], atol=1e-4)  # quantized indeed


def test_the_export_is_made_once(root, monkeypatch):
    first = OnnxEncoder(cache=False, progress=False, root=root)
    vec = first.encode(TEXTS[:1])
    folder = first.export_dir()
    stamp = (folder / GRAPH).stat().st_mtime_ns
    assert (folder / META).exists() and not list(root.glob(".*tmp*"))

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr("vpl.embed.quantized.export", no_export)
    again = OnnxEncoder(cache=False, progress=False, root=root)
    np.testing.assert_array_equal(again.encode(TEXTS[:1]), vec)
    assert again.export_dir() == folder and (folder / GRAPH).stat().st_mtime_ns == stamp


def test_a_failed_export_leaves_no_folder(tmp_path, monkeypatch):
    def broken(path, pooling, out, *, quantize):
        (out / GRAPH).write_text("half")
        raise RuntimeError("interrupted")

    monkeypatch.setattr("vpl.embed.quantized.export", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        OnnxEncoder(cache=False, progress=False, root=tmp_path).encode(TEXTS[:1])
    assert not list(tmp_path.iterdir())


def test_its_vectors_have_a_cache_identity_of_their_own(root, tmp_path):
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    fp32 = SentenceEncoder(DEFAULT_ENCODER, cache=cache, progress=False)
    first = fp32.encode(TEXTS)
    int8 = OnnxEncoder(DEFAULT_ENCODER, cache=cache, progress=False, root=root)
    assert int8.model_id == fp32.model_id + "+onnx-int8"
    assert int8.model_id == make_encoder("minilm+onnx-int8", cache=False).model_id
    vecs = int8.encode(TEXTS)
    assert int8.computed == len(TEXTS) and not np.allclose(vecs, first, atol=1e-4)
    served = OnnxEncoder(DEFAULT_ENCODER, cache=cache, progress=False, root=root)
    np.testing.assert_array_equal(served.encode(TEXTS), vecs)
    assert served.computed == 0 and served._model is None  # nothing loaded, nothing exported
