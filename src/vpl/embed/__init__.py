"""Text -> vectors through a frozen sentence encoder (PyTorch, or ONNX Runtime with int8
weights), with a disk cache."""

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
from vpl.embed.quantized import OnnxEncoder

__all__ = [
    "DEFAULT_ENCODER",
    "DEFAULT_ITEM_DIM",
    "DEFAULT_MODEL",
    "LAYERS_SUFFIX",
    "EmbeddingCache",
    "OnnxEncoder",
    "Projection",
    "SentenceEncoder",
    "default_cache_path",
    "embed_comparisons",
    "fit_pca",
    "offline_defaults",
    "split_response",
]
