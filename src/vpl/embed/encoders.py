"""Choosing a text encoder by its `--embed-model` name."""

from __future__ import annotations

from vpl.embed.cache import EmbeddingCache
from vpl.embed.causal import CausalLMEncoder, is_causal
from vpl.embed.encoder import DEFAULT_ENCODER, SentenceEncoder, TextEncoder
from vpl.embed.quantized import OnnxEncoder, split_backend

ALIASES = {"minilm": DEFAULT_ENCODER}
"""Short names: `minilm` is the default (layer-pooled bundled MiniLM); `smollm2` (a causal LM,
`vpl.embed.causal`) is resolved there."""


def make_encoder(name: str = DEFAULT_ENCODER, *, cache: EmbeddingCache | None | bool = True,
                 progress: bool = True, device: str | None = None) -> TextEncoder:
    """The encoder a name selects: a causal LM (`causal:PATH`, `smollm2`, with `#last` /
    `#mean` and `@LAYER`), else a sentence-transformers model (the bundled MiniLM, or a local
    folder, with `#layers`), run by PyTorch or, with a `+onnx-int8` / `+onnx` suffix, by ONNX
    Runtime (`vpl.embed.quantized`; e.g. `minilm+onnx-int8`)."""
    base, backend = split_backend(name)
    base = ALIASES.get(base, base)
    if backend is not None:
        if is_causal(base):
            raise ValueError(f"{name!r}: the +{backend} backend runs sentence encoders, not "
                             "causal LMs")
        return OnnxEncoder(base, backend=backend, cache=cache, progress=progress,
                           device=device or "cpu")
    if is_causal(base):  # device None: a GPU when there is one
        return CausalLMEncoder(base, cache=cache, progress=progress, device=device)
    return SentenceEncoder(base, cache=cache, progress=progress, device=device or "cpu")
