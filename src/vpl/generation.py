"""Personalized best-of-N: sample N responses to a prompt with a causal LM, score them with a
trained run's reward conditioned on a user's latent, and rank them for that user.

The candidates of a prompt are generated once; ranking them for another user costs one
scoring pass (`rank`), not another generation. `vpl generate` is the command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_LM = "smollm2"
"""The generator unless told otherwise: SmolLM2-135M-Instruct (`vpl.embed.causal`)."""


@dataclass(frozen=True)
class Ranked:
    """One candidate response with its reward for a user (posterior mean and std)."""

    text: str
    reward: float
    std: float


class Generator:
    """A causal LM that samples responses (loaded from a local folder, a .gguf file or the
    `smollm2` alias, like the causal-LM encoder)."""

    def __init__(self, name: str = DEFAULT_LM, *, device: str = "cpu") -> None:
        from vpl.embed.causal import parse_name, resolve
        from vpl.embed.offline import offline_defaults

        offline_defaults()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path, _ = resolve(parse_name(name)[0])
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.tokenizer.padding_side = "left"  # generation continues after the prompt
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(str(path)).to(device).eval()

    def sample(self, prompt: str, n: int, *, max_new_tokens: int = 64,
               temperature: float = 0.8, top_p: float = 0.95, seed: int = 0) -> list[str]:
        """N sampled responses to `prompt` (in the model's chat template when it has one)."""
        return self.sample_batch([prompt] * n, max_new_tokens=max_new_tokens,
                                 temperature=temperature, top_p=top_p, seed=seed)

    def sample_batch(self, prompts: Sequence[str], *, max_new_tokens: int = 64,
                     temperature: float = 0.8, top_p: float = 0.95, seed: int = 0
                     ) -> list[str]:
        """One sampled response to each prompt, all in one left-padded batch."""
        import torch

        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                             add_generation_prompt=True) for p in prompts]
            inputs = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        else:
            inputs = tok(list(prompts), return_tensors="pt", padding=True)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs.to(self.model.device), do_sample=True,
                                      temperature=temperature, top_p=top_p,
                                      max_new_tokens=max_new_tokens,
                                      pad_token_id=tok.pad_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]  # (B, new tokens)
        return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]


def rank(scorer: Any, belief: Any, prompt: str, candidates: Sequence[str]) -> list[Ranked]:
    """The candidates ordered by the user's reward, best first (one scoring pass)."""
    mean, std = scorer.score(belief, prompt, list(candidates))
    order = sorted(range(len(candidates)), key=lambda i: -float(mean[i]))
    return [Ranked(candidates[i], float(mean[i]), float(std[i])) for i in order]


def add_generate_command(sub: argparse._SubParsersAction) -> None:
    """Register `vpl generate` on the main CLI's subparsers."""
    g = sub.add_parser("generate", help="personalized best-of-N: sample N responses and rank "
                       "them for each user",
                       description="Sample N responses to a prompt with a causal LM and rank "
                       "them by a trained run's reward for each user (from their comparisons).")
    g.add_argument("--run", required=True, help="run directory of a trained latent model")
    g.add_argument("--context", nargs="*", default=[],
                   help="JSONL files of users' comparisons {prompt, chosen, rejected}, one user "
                   "per file (none: the population's ranking)")
    g.add_argument("--prompt", required=True)
    g.add_argument("--n", type=int, default=8, help="responses to sample")
    g.add_argument("--lm", default=DEFAULT_LM,
                   help="generator: smollm2, a model folder or a .gguf file")
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from vpl.serve.scorer import RunScorer
    from vpl.serve.service import read_objects, text_of

    if args.n < 1:
        raise ValueError("--n must be at least 1")
    scorer = RunScorer(args.run)  # before the generator: a bad run fails fast
    users = []
    for path in args.context or [None]:
        rows = read_objects(path, ("chosen", "rejected")) if path else []
        cols = [[text_of(r, f, source=path, line=n, empty=f == "prompt") for n, r in rows]
                for f in ("prompt", "chosen", "rejected")]
        users.append((path, scorer.belief(f"generate:{path}", len(rows), *cols)))
    candidates = Generator(args.lm).sample(args.prompt, args.n,
                                           max_new_tokens=args.max_new_tokens,
                                           temperature=args.temperature, seed=args.seed)
    for path, belief in users:
        ranked = rank(scorer, belief, args.prompt, candidates)
        sys.stdout.write(json.dumps({"user": path, "prompt": args.prompt,
                                     "ranked": [asdict(r) for r in ranked]}) + "\n")
    return 0
