"""Choosing a text encoder by its `--embed-model` name."""

from __future__ import annotations

from vpl.embed.cache import EmbeddingCache
from vpl.embed.causal import CausalLMEncoder, is_causal
from vpl.embed.encoder import DEFAULT_ENCODER, SentenceEncoder, TextEncoder

ALIASES = {"minilm": DEFAULT_ENCODER}
"""Short names: `minilm` is the default (layer-pooled bundled MiniLM); `smollm2` (a causal LM,
`vpl.embed.causal`) is resolved there."""


def make_encoder(name: str = DEFAULT_ENCODER, *, cache: EmbeddingCache | None | bool = True,
                 progress: bool = True, device: str | None = None) -> TextEncoder:
    """The encoder a name selects: a causal LM (`causal:PATH`, `smollm2`, with `#last` /
    `#mean` and `@LAYER`), else a sentence-transformers model (the bundled MiniLM, or a local
    folder, with `#layers`)."""
    name = ALIASES.get(name, name)
    if is_causal(name):  # device None: a GPU when there is one
        return CausalLMEncoder(name, cache=cache, progress=progress, device=device)
    return SentenceEncoder(name, cache=cache, progress=progress, device=device or "cpu")
