"""`vpl embed`: the cache filled by shards of disjoint texts, in one process or two (torchrun,
gloo-free: the shards need no process group), resumable, and what training then reads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vpl.data.io import load_records
from vpl.embed.cache import EmbeddingCache, text_key
from vpl.embed.causal import CausalLMEncoder
from vpl.embed.encoder import embed_comparisons
from vpl.embed.precompute import precompute, texts_to_embed


def _encoder(tiny_lm, cache):
    return CausalLMEncoder(f"causal:{tiny_lm}#mean", cache=cache, progress=False, device="cpu",
                           max_tokens=32)


def test_shards_are_disjoint_cover_everything_and_resume(tiny_lm, pets, tmp_path):
    records, _ = load_records(pets / "train.jsonl")
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    enc = _encoder(tiny_lm, cache)
    texts = texts_to_embed(records, enc)
    a = precompute(records, enc, rank=0, world=2, chunk=7)
    b = precompute(records, _encoder(tiny_lm, cache), rank=1, world=2, chunk=7)
    assert a.shard + b.shard == a.texts == len(texts) and a.embedded == a.shard
    assert len(cache) == len(texts)
    again = precompute(records, _encoder(tiny_lm, cache), rank=0, world=1)
    assert again.embedded == 0  # a rerun (or a resumed one) embeds nothing twice
    fresh = _encoder(tiny_lm, cache)
    embed_comparisons(records, fresh)
    assert fresh.computed == 0  # training reads every text from the cache
    with pytest.raises(ValueError, match="rank"):
        precompute(records, enc, rank=2, world=2)


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is not installed beside this interpreter")
def test_two_processes_under_torchrun_fill_one_cache(tiny_lm, pets, tmp_path):
    env = {**os.environ, "VPL_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-port", "0", "-m",
                          "vpl.cli", "embed", "--data", str(pets / "train.jsonl"),
                          "--embed-model", f"causal:{tiny_lm}#mean", "--chunk", "16",
                          "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = sorted(line for line in out.stdout.splitlines() if line.startswith("rank"))
    assert [line.split(":")[0] for line in lines] == ["rank 0/2", "rank 1/2"]
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    records, _ = load_records(pets / "train.jsonl")
    enc = CausalLMEncoder(f"causal:{tiny_lm}#mean", cache=cache, progress=False, device="cpu")
    texts = texts_to_embed(records, enc)
    keys = [text_key(enc.model_id, t) for t in texts]
    assert len(cache.get(keys)) == len(texts)  # no text lost, none in two places (keys unique)
