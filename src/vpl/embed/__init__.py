"""Text -> vectors through a frozen sentence encoder, with a disk cache."""

from vpl.embed.cache import EmbeddingCache, default_cache_path
from vpl.embed.encoder import (
    DEFAULT_MODEL,
    LAYERS_SUFFIX,
    SentenceEncoder,
    embed_comparisons,
    split_response,
)

__all__ = [
    "DEFAULT_MODEL",
    "LAYERS_SUFFIX",
    "EmbeddingCache",
    "SentenceEncoder",
    "default_cache_path",
    "embed_comparisons",
    "split_response",
]
