"""Embedding throughput of the causal-LM backend (`vpl.embed.causal`) against a plain
`transformers` forward pass over the same texts and batch size, and of a cached re-run.

- plain: tokenizer + the model's transformer (no language-model head), batches in the given
  order, the last hidden state kept: what a user would write by hand;
- vpl, cold: `CausalLMEncoder.encode` on an empty cache (sorting by length, the chat template,
  pooling, the cache write included);
- vpl, cached: the same texts again (served by the disk cache).

Texts: Personas responses (`vpl data personas`), the same for every row.

Usage: python benchmarks/embed_bench.py [--model smollm2] [--texts 256] [--batch-size 16]
       [--out benchmarks/results/embed.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vpl.data.io import atomic_write_text
from vpl.data.personas import generate_personas
from vpl.embed.cache import EmbeddingCache
from vpl.embed.causal import CausalLMEncoder
from vpl.experiments.report import git_commit


def personas_texts(n: int) -> list[str]:
    train, _ = generate_personas("4", seed=0)
    texts = list(dict.fromkeys(t for r in train for t in (r["chosen"], r["rejected"])))
    return texts[:n]


def plain_forward(enc: CausalLMEncoder, texts: list[str], batch_size: int) -> float:
    """Seconds for a hand-written forward pass over the formatted texts."""
    model, tok = enc.model, enc.tokenizer
    formatted = enc.format(texts)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(formatted), batch_size):
            batch = tok(formatted[s : s + batch_size], padding=True, truncation=True,
                        max_length=enc.max_length, return_tensors="pt",
                        add_special_tokens=not enc.templated)
            model.base_model(**batch).last_hidden_state[:, -1].numpy()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default="benchmarks/results/embed.md")
    args = ap.parse_args()
    torch.manual_seed(0)
    texts = personas_texts(args.texts)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(Path(tmp) / "emb.sqlite")
        enc = CausalLMEncoder(args.model, cache=cache, batch_size=args.batch_size,
                              progress=False)
        enc.encode(texts[: args.batch_size])  # load and warm up; not timed
        warm = set(texts[: args.batch_size])
        texts = [t for t in texts if t not in warm]
        plain = min(plain_forward(enc, texts, args.batch_size) for _ in range(2))
        t0 = time.perf_counter()
        first = enc.encode(texts)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = enc.encode(texts)
        cached = time.perf_counter() - t0
        assert np.array_equal(first, again)
    n = len(texts)
    rows = [("plain transformers forward", plain), ("vpl encoder, empty cache", cold),
            ("vpl encoder, cached", cached)]
    lines = ["# Causal-LM embedding throughput", "",
             f"`python benchmarks/embed_bench.py --model {args.model} --texts {args.texts} "
             f"--batch-size {args.batch_size}`, commit `{git_commit()}`, 2 CPU cores, fp32, "
             f"{torch.get_num_threads()} torch threads; {n} Personas responses.", "",
             "| pass | seconds | texts/s | vs plain |", "|---|---|---|---|"]
    for name, sec in rows:
        lines.append(f"| {name} | {sec:.2f} | {n / sec:.1f} | {plain / sec:.2f}x |")
    lines += ["", f"Cached re-run: {cold / cached:.0f}x faster than the cold run."]
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
