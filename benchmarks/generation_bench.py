"""Personalized best-of-N judged by simulated users whose utility is measured on the generated
text itself (`vpl.data.textusers`: length, examples, hedging, enthusiasm, lists, formality,
weighted by four user types).

1. SmolLM2 generates candidate responses to advice prompts (each sample steered by a random
   style hint, so candidates differ in the attributes users care about); once, shared by every
   seed.
2. Simulated training users label comparisons of candidates of the training prompts; VPL and
   BTL are trained on them (default flags, the default text encoder).
3. Each new test user answers K=8 comparisons; on the test prompts (never seen in training),
   each picks among the first N candidates by its reward: VPL given the user's answers, BTL,
   a single sample, and the oracle (the candidate of highest true utility).

Reported per N in {1, 4, 8, 16}: mean true utility over users (95% CI over users, seeds
pooled), VPL's win rate against BTL over users, and the share of the single-sample-to-oracle
gap that VPL best-of-N closes.

Usage: python benchmarks/generation_bench.py [--seeds 0 1 2] [--out benchmarks/results/generation.md]
       [--candidates FILE]  (reuse generated candidates; written on first run)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from vpl.data.io import atomic_write_text, write_jsonl
from vpl.data.textusers import choose, make_users, standardized
from vpl.embed.cache import default_cache_path
from vpl.experiments.report import git_commit
from vpl.experiments.runs import train_run
from vpl.generation import Generator
from vpl.serve.scorer import RunScorer
from vpl.stats import t_halfwidth

PROMPTS = [
    "How can I sleep better?", "How do I start running?", "How should I save money?",
    "How do I learn a new language?", "How can I keep houseplants alive?",
    "How do I make friends in a new city?", "How should I prepare for a job interview?",
    "How can I cook healthier meals?", "How do I stop procrastinating?",
    "How can I be more productive at work?", "How do I take care of a new puppy?",
    "How should I plan a weekend trip?", "How can I reduce stress?",
    "How do I write a good essay?", "How can I learn to draw?",
    "How do I keep my kitchen clean?", "How should I ask for a raise?",
    "How do I choose a good book?", "How can I drink more water?",
    "How do I start a vegetable garden?", "How can I improve my handwriting?",
    "How should I organize my closet?", "How do I learn to swim as an adult?",
    "How can I spend less time on my phone?", "How do I make good coffee at home?",
    "How should I study for an exam?", "How can I be a better listener?",
    "How do I fix a squeaky door?", "How can I get better at chess?",
    "How do I pack for a long flight?", "How should I start meditating?",
    "How can I make my mornings easier?", "How do I talk to my neighbor about noise?",
    "How can I learn to play guitar?", "How do I keep a journal?",
    "How should I choose a laptop?", "How can I stay warm in winter?",
    "How do I bake bread?", "How can I help a friend who is sad?",
    "How do I prepare for a marathon?", "How should I clean my bike?",
    "How can I remember names better?", "How do I teach a child to read?",
    "How can I make a small room look bigger?", "How do I stop snoring?",
    "How should I water a cactus?", "How can I get up earlier?", "How do I clean a laptop?",
]
STYLES = ["Answer in one short sentence.", "Give a detailed answer with examples.",
          "Answer with a bulleted list.", "Answer enthusiastically!",
          "Answer carefully, noting what it depends on.", "Answer formally.",
          "Answer casually, like a friend.", ""]
N_TRAIN_PROMPTS, CAND_TRAIN, CAND_TEST = 32, 8, 16
TRAIN_USERS_PER_TYPE, TRAIN_PAIRS_PER_USER = 40, 48


def generate(path: Path, max_new_tokens: int) -> dict[str, list[str]]:
    """Candidates per prompt (8 for a training prompt, 16 for a test prompt), cached in
    `path`."""
    if path.exists():
        return json.loads(path.read_text())
    gen, out = Generator(), {}
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i, prompt in enumerate(PROMPTS):
        n = CAND_TRAIN if i < N_TRAIN_PROMPTS else CAND_TEST
        styles = [STYLES[j % len(STYLES)] for j in rng.permutation(n)]
        asks = [f"{prompt} {s}".strip() for s in styles]
        out[prompt] = gen.sample_batch(asks, max_new_tokens=max_new_tokens, temperature=1.0,
                                       seed=i)
        print(f"generated {i + 1}/{len(PROMPTS)} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    atomic_write_text(path, json.dumps(out, indent=1))
    return out


def label(users: np.ndarray, kinds: list[str], prefix: str, prompts: list[str],
          cands: dict[str, list[str]], util: dict[str, np.ndarray], n: int,
          rng: np.random.Generator, beta: float = 3.0) -> list[dict]:
    """`n` comparisons per user: two candidates of a random prompt, chosen by Bradley-Terry
    on the user's utility."""
    rows = []
    for u, w in enumerate(users):
        for _ in range(n):
            p = prompts[rng.integers(len(prompts))]
            a, b = rng.choice(len(cands[p]), 2, replace=False)
            if not choose(util[p][a] @ w, util[p][b] @ w, rng, beta):
                a, b = b, a
            rows.append({"user_id": f"{prefix}{u}", "user_type": kinds[u], "prompt": p,
                         "chosen": cands[p][a], "rejected": cands[p][b]})
    return rows


def one_seed(seed: int, cands: dict[str, list[str]], util: dict[str, np.ndarray],
             work: Path, ns: list[int]) -> dict[str, np.ndarray]:
    """True utility (users, prompts) of each picker at each N, for one seed."""
    rng = np.random.default_rng(seed)
    train_p, test_p = PROMPTS[:N_TRAIN_PROMPTS], PROMPTS[N_TRAIN_PROMPTS:]
    w_tr, k_tr = make_users(TRAIN_USERS_PER_TYPE, seed=100 + seed)
    w_te, k_te = make_users(10, seed=200 + seed)
    write_jsonl(work / "train.jsonl", label(w_tr, k_tr, "train", train_p, cands, util,
                                            TRAIN_PAIRS_PER_USER, rng))
    ctx = label(w_te, k_te, "test", train_p, cands, util, 8, rng)
    runs = {}
    for m in ("vpl", "btl"):
        train_run(work / "train.jsonl", m, work / m, test_users=0.0, heldout_pairs=0.1,
                  progress=False)
        runs[m] = RunScorer(work / m)
    out = {f"{who}@{n}": np.zeros((len(w_te), len(test_p))) for who in
           ("vpl", "btl", "single", "oracle") for n in ns}
    for u, w in enumerate(w_te):
        mine = [r for r in ctx if r["user_id"] == f"test{u}"]
        cols = [[r[f] for r in mine] for f in ("prompt", "chosen", "rejected")]
        beliefs = {m: s.belief(f"test{u}", len(mine), *cols) for m, s in runs.items()}
        for j, p in enumerate(test_p):
            true = util[p] @ w  # (16,)
            scores = {m: runs[m].score(beliefs[m], p, cands[p])[0] for m in runs}
            for n in ns:
                out[f"vpl@{n}"][u, j] = true[np.argmax(scores["vpl"][:n])]
                out[f"btl@{n}"][u, j] = true[np.argmax(scores["btl"][:n])]
                out[f"single@{n}"][u, j] = true[0]
                out[f"oracle@{n}"][u, j] = true[:n].max()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--candidates", default=None,
                    help="JSON of generated candidates, reused when it exists (default: "
                    "generation_candidates.json in the vpl cache folder)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--out", default="benchmarks/results/generation.md")
    args = ap.parse_args()
    ns = [1, 4, 8, 16]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cand_path = Path(args.candidates) if args.candidates else \
            default_cache_path().parent / "generation_candidates.json"
        cands = generate(cand_path, args.max_new_tokens)
        every = [t for p in PROMPTS for t in cands[p]]
        z = standardized(every)
        util, i = {}, 0
        for p in PROMPTS:
            util[p] = z[i : i + len(cands[p])]
            i += len(cands[p])
        per_seed = [one_seed(s, cands, util, work, ns) for s in args.seeds]
    res = {k: np.concatenate([r[k] for r in per_seed]) for k in per_seed[0]}  # (users, prompts)
    user_mean = {k: v.mean(1) for k, v in res.items()}  # (users,)
    lines = ["# Personalized best-of-N with simulated users who judge generated text", "",
             f"`python benchmarks/generation_bench.py --seeds {' '.join(map(str, args.seeds))}`,"
             f" commit `{git_commit()}`, 2 CPU cores, {time.perf_counter() - t0:.0f} s. "
             f"SmolLM2-135M-Instruct generates {CAND_TRAIN} candidates for each of "
             f"{N_TRAIN_PROMPTS} training prompts and {CAND_TEST} for each of "
             f"{len(PROMPTS) - N_TRAIN_PROMPTS} test prompts; {4 * TRAIN_USERS_PER_TYPE} training "
             f"users (4 types) label {TRAIN_PAIRS_PER_USER} comparisons each; 40 new users per "
             "seed answer 8; utility in standard units of the attributes (clipped at 3). Mean true utility per user, 95% CI over users (seeds pooled):",
             "", "| N | single sample | BTL best-of-N | VPL best-of-N | oracle best-of-N | "
             "VPL beats BTL (users) | gap closed by VPL |", "|---|---|---|---|---|---|---|"]
    for n in ns:
        def cell(key: str) -> str:
            return f"{user_mean[key].mean():.3f} ± {t_halfwidth(user_mean[key]):.3f}"

        wins = float(np.mean(user_mean[f"vpl@{n}"] > user_mean[f"btl@{n}"]))
        gap = user_mean[f"oracle@{n}"] - user_mean[f"single@{n}"]
        closed = float(np.mean(user_mean[f"vpl@{n}"] - user_mean[f"single@{n}"]) /
                       max(float(np.mean(gap)), 1e-9))
        lines.append(f"| {n} | {cell(f'single@{n}')} | {cell(f'btl@{n}')} | "
                     f"{cell(f'vpl@{n}')} | {cell(f'oracle@{n}')} | {wins:.0%} | "
                     f"{closed:.0%} |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
