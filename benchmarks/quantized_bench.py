"""Throughput and downstream accuracy of the sentence encoder compiled to ONNX with int8 weights
(`vpl.embed.quantized`) against today's path (PyTorch, float32), on one Personas data set.

- throughput, same texts, batch size and threads for every encoder: PyTorch float32, the
  float32 ONNX graph (`+onnx`) and the int8 one (`+onnx-int8`) on a sample of the texts, best
  of interleaved rounds (the cores may be shared with other jobs, whose bursts a round can
  catch); then PyTorch and int8 on every distinct text that training embeds (prompts cut as
  `item_vectors` cuts them, responses), one cold pass each;
- accuracy: `btl` and `vpl` with their default options trained on the data embedded each way,
  exactly as `vpl bench` prepares, trains and scores them (`prepare`, `run_job`); item-disjoint
  test accuracy (unseen users) at K=8.

Everything runs in a fresh cache folder (embeddings and exports), so every pass is cold and the
one-off export is timed; the accuracy runs read the vectors the full passes left in the cache.

Usage: python benchmarks/quantized_bench.py [--encoder minilm] [--backend onnx-int8]
       [--suite quick] [--dataset personas-continuous] [--seeds 1] [--sample 256] [--rounds 3] [--batch-size 64] [--threads 2]
       [--out benchmarks/results/quantized.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from vpl.data.io import atomic_write_text
from vpl.embed.encoder import TextEncoder
from vpl.embed.encoders import make_encoder
from vpl.embed.precompute import texts_to_embed
from vpl.experiments.bench import run_job, select
from vpl.experiments.prepare import generated_records, prepare
from vpl.experiments.report import git_commit
from vpl.experiments.suites import Suite

K = 8
MODELS = ("btl", "vpl")


def encoder(name: str, batch_size: int, *, cache: bool = False) -> TextEncoder:
    """The encoder of a name, loaded (and exported) now, so no timing includes it."""
    enc = make_encoder(name, cache=cache, progress=False)
    enc.batch_size = batch_size
    enc.encode(["load the model before timing it"])
    return enc


def timed(enc: TextEncoder, texts: list[str]) -> tuple[float, np.ndarray]:
    """(seconds, vectors) of one pass over texts."""
    t0 = time.perf_counter()
    vecs = enc.encode(texts)
    return time.perf_counter() - t0, vecs


def sample_rows(names: list[str], texts: list[str], batch_size: int, rounds: int) -> list[str]:
    """Table rows: how long each encoder's first load took (the export, for an ONNX backend),
    its texts/s on the sample, interleaved rounds, and how close its vectors are to the first
    (PyTorch float32) encoder's."""
    encs, load = {}, {}
    for name in names:
        t0 = time.perf_counter()
        encs[name] = encoder(name, batch_size)
        load[name] = time.perf_counter() - t0
    speed: dict[str, list[float]] = {name: [] for name in names}
    vecs: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for name, enc in encs.items():
            sec, vecs[name] = timed(enc, texts)
            speed[name].append(len(texts) / sec)
    ref = vecs[names[0]]
    rows = []
    for name in names:
        v = vecs[name]
        cos = (v * ref).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(ref, axis=1)
        best = max(speed[name])
        rows.append(f"| `{name}` | {load[name]:.1f} | {best:.1f} | "
                    f"{statistics.median(speed[name]):.1f} | {best / max(speed[names[0]]):.2f}x | "
                    f"{cos.min():.4f} / {cos.mean():.4f} |")
    return rows


def full_rows(names: list[str], texts: list[str], batch_size: int) -> list[str]:
    """Table rows: one cold pass of each encoder over every text (its vectors cached for the
    accuracy runs)."""
    rows, first = [], None
    for name in names:
        sec, _ = timed(encoder(name, batch_size, cache=True), texts)
        first = first or sec
        rows.append(f"| `{name}` | {sec:.1f} | {len(texts) / sec:.1f} | {first / sec:.2f}x |")
    return rows


def accuracy_rows(names: list[str], suite: Suite, seeds: int) -> list[str]:
    """Table rows: item-disjoint accuracy at K of each model, trained on the suite's data set
    embedded by each encoder, mean over seeds, and the difference (points, and per seed)."""
    acc: dict[tuple[str, str], list[float]] = {}
    for name in names:
        prep = prepare(suite.datasets[0], progress=False, embed_model=name)
        for model in MODELS:
            for seed in range(seeds):
                r = run_job(prep, model, seed, (K,), suite.train)
                acc.setdefault((model, name), []).append(
                    r["curve"][str(K)]["accuracy_item_disjoint"])
    rows = []
    for model in MODELS:
        base, new = (np.array(acc[(model, n)]) for n in names)
        per_seed = ", ".join(f"{100 * d:+.2f}" for d in new - base)
        rows.append(f"| {model} | {base.mean():.4f} | {new.mean():.4f} | "
                    f"{100 * (new - base).mean():+.2f} ({per_seed}) |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default="minilm", help="the float32 encoder's name")
    ap.add_argument("--backend", default="onnx-int8")
    ap.add_argument("--suite", default="quick", help="a `vpl bench` suite")
    ap.add_argument("--dataset", default="personas-continuous",
                    help="one of the suite's data sets")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--sample", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/quantized.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # the ONNX backends use as many threads as torch
    commit = git_commit()
    fp32, quant = args.encoder, f"{args.encoder}+{args.backend}"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VPL_CACHE_DIR"] = tmp  # cold embeddings and exports
        suite = select(args.suite, datasets=[args.dataset])
        train, test = generated_records(suite.datasets[0], seed=0)
        texts = texts_to_embed(train + test, make_encoder(fp32, cache=False, progress=False))
        rng = np.random.default_rng(0)
        sample = [texts[i] for i in rng.choice(len(texts), min(args.sample, len(texts)),
                                               replace=False)]
        fast = sample_rows([fp32, f"{args.encoder}+onnx", quant], sample, args.batch_size,
                           args.rounds)
        full = full_rows([fp32, quant], texts, args.batch_size)
        acc = accuracy_rows([fp32, quant], suite, args.seeds)
    minutes = (time.perf_counter() - t0) / 60
    lines = [
        "# Quantized sentence encoder: throughput and accuracy", "",
        f"`python benchmarks/quantized_bench.py --encoder {args.encoder} --backend "
        f"{args.backend} --suite {args.suite} --dataset {args.dataset} --seeds {args.seeds} --sample {args.sample} "
        f"--rounds {args.rounds} --batch-size {args.batch_size} --threads {args.threads}`, "
        f"commit `{commit}`, {os.cpu_count()} CPU cores shared with other jobs (1-minute load "
        f"average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), "
        f"{args.threads} threads, batch size {args.batch_size}; {minutes:.1f} minutes in all.",
        "",
        f"Throughput on {len(sample)} of the data set's texts, {args.rounds} interleaved "
        "rounds (the best shows the encoder with the cores to itself, the median what other "
        "jobs left it); cosine of each vector to the PyTorch float32 one:", "",
        "| encoder | first load (s), the export included | texts/s (best) | texts/s (median) "
        "| speedup (best) | cosine min / mean |", "|---|---|---|---|---|---|", *fast, "",
        f"Every distinct text training embeds ({len(texts)}), one cold pass each:", "",
        "| encoder | seconds | texts/s | speedup |", "|---|---|---|---|", *full, "",
        f"Item-disjoint test accuracy at K={K} (unseen users; `{args.dataset}` of the "
        f"`{args.suite}` suite), trained and scored as `vpl bench` does, mean over {args.seeds} seed(s); the "
        "difference in points, per seed in brackets:", "",
        f"| model | `{fp32}` | `{quant}` | difference (points) |", "|---|---|---|---|", *acc]
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
