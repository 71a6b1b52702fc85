"""Filling the embedding cache ahead of training (`vpl embed`), sharded over processes.

Every distinct text that training will embed (each prompt, cut from the left as `item_vectors`
cuts it, and each response) is listed in a fixed order; process `rank` of `world` embeds every
`world`-th of them, in chunks, each chunk written to the shared disk cache (SQLite in WAL mode,
so several writers share it) before the next starts. An interrupted run loses at most a chunk
per process; running again embeds only what the cache lacks. Under `torchrun` (or `accelerate
launch`) the rank and world size come from `RANK` and `WORLD_SIZE`; no process group is needed,
since the shards are disjoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vpl.data.schema import Comparison
from vpl.embed.cache import text_key
from vpl.embed.encoder import TextEncoder, index_comparisons, item_texts


@dataclass(frozen=True)
class PrecomputeReport:
    """What one process did: its share of the texts and how many it had to embed."""

    rank: int
    world: int
    texts: int
    """Distinct texts of all shards."""
    shard: int
    """Texts of this process's shard."""
    embedded: int
    """Texts of the shard the model embedded (the rest were cached already)."""


def texts_to_embed(records: Sequence[Comparison], encoder: TextEncoder) -> list[str]:
    """The distinct texts training embeds for these comparisons (`item_texts` of their items),
    in a fixed (sorted) order."""
    pairs, _ = index_comparisons(records)
    _, cut, responses = item_texts(pairs, encoder)
    return sorted(set(cut) | set(responses))


def precompute(records: Sequence[Comparison], encoder: TextEncoder, *, rank: int = 0,
               world: int = 1, chunk: int = 512) -> PrecomputeReport:
    """Embed this process's shard of the texts into the encoder's cache, `chunk` at a time."""
    if encoder.cache is None:
        raise ValueError("precompute fills the embedding cache: give the encoder a cache")
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    texts = texts_to_embed(records, encoder)
    mine = texts[rank::world]
    keys = [text_key(encoder.model_id, t) for t in mine]
    have = set(encoder.cache.get(keys))
    todo = [t for t, k in zip(mine, keys, strict=True) if k not in have]
    before = encoder.computed
    for s in range(0, len(todo), chunk):
        encoder.encode(todo[s : s + chunk])  # written to the cache before the next chunk
    return PrecomputeReport(rank, world, len(texts), len(mine), encoder.computed - before)
