"""Text -> vectors through a frozen sentence encoder, with a disk cache."""

from vpl.embed.cache import EmbeddingCache, default_cache_path
from vpl.embed.encoder import (
    DEFAULT_ENCODER,
    DEFAULT_ITEM_DIM,
    DEFAULT_MODEL,
    LAYERS_SUFFIX,
    SentenceEncoder,
    embed_comparisons,
    split_response,
)
from vpl.embed.offline import offline_defaults
from vpl.embed.projection import Projection, fit_pca

__all__ = [
    "DEFAULT_ENCODER",
    "DEFAULT_ITEM_DIM",
    "DEFAULT_MODEL",
    "LAYERS_SUFFIX",
    "EmbeddingCache",
    "Projection",
    "SentenceEncoder",
    "default_cache_path",
    "embed_comparisons",
    "fit_pca",
    "offline_defaults",
    "split_response",
]
