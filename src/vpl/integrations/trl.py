"""A personalized reward for TRL's online trainers (`GRPOTrainer`, `RLOOTrainer`, online DPO
judges, best-of-N): a callable with TRL's reward-function signature, `(prompts, completions,
**kwargs) -> list[float]`, that scores each completion under one user's latent.

The user comes from their answered comparisons: one `context` for every sample (train a policy
for that user), or a dataset column (`user_column`, default `user_id`) whose values key
`contexts` (one policy for many users, each sample scored for its own). A user without
comparisons gets the population's reward. TRL is not needed to import this module; only the
trainer that calls it needs it (`pip install 'vpl-rlhf[trl]'`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vpl.serve.scorer import Belief, RunScorer

Comparisons = Iterable[Mapping[str, str]] | str | os.PathLike
"""Answered comparisons: dicts with `chosen`, `rejected` (and optionally `prompt`), or the path
of a JSONL file of them."""


def _text(x: Any) -> str:
    """A prompt or completion as text: TRL passes strings, or conversations (lists of
    {"role", "content"} messages), whose contents are joined."""
    if isinstance(x, str):
        return x
    if isinstance(x, Sequence) and all(isinstance(m, Mapping) for m in x):
        return "\n".join(str(m.get("content", "")) for m in x)
    raise TypeError(f"expected a string or a list of messages, got {type(x).__name__}")


def _columns(comparisons: Comparisons) -> tuple[list[str], list[str], list[str]]:
    if isinstance(comparisons, str | os.PathLike):
        from vpl.serve.service import read_objects

        rows = [row for _, row in read_objects(Path(comparisons), ("chosen", "rejected"))]
    else:
        rows = list(comparisons)
    return ([str(r.get("prompt", "")) for r in rows], [str(r["chosen"]) for r in rows],
            [str(r["rejected"]) for r in rows])


class PersonalizedReward:
    """TRL reward function: the posterior-mean reward of each completion for its user, minus
    `uncertainty` times the reward's posterior standard deviation (0: the mean alone; > 0
    penalizes completions whose value for this user is uncertain)."""

    def __init__(self, run_dir: str | os.PathLike, *, context: Comparisons | None = None,
                 contexts: Mapping[str, Comparisons] | None = None,
                 user_column: str = "user_id", uncertainty: float = 0.0,
                 scorer: RunScorer | None = None) -> None:
        self.scorer = scorer if scorer is not None else RunScorer(run_dir)
        self.user_column = user_column
        self.uncertainty = uncertainty
        self.__name__ = "vpl_reward"  # TRL names logged metrics after the function
        self._contexts = {str(u): _columns(c) for u, c in (contexts or {}).items()}
        self._default = _columns(context) if context is not None else ([], [], [])
        self._beliefs: dict[str | None, Belief] = {}

    def belief(self, user: str | None) -> Belief:
        """The posterior of a user (None: the `context` user), computed once."""
        if user not in self._beliefs:
            cols = self._default if user is None else self._contexts.get(str(user),
                                                                          ([], [], []))
            self._beliefs[user] = self.scorer.belief(f"trl:{user}", len(cols[0]), *cols)
        return self._beliefs[user]

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
                 ) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        users = kwargs.get(self.user_column)
        if users is None:
            users = [None] * len(prompts)
        groups: dict[tuple[Any, str], list[int]] = {}
        for i, (u, p) in enumerate(zip(users, prompts, strict=True)):
            groups.setdefault((u, _text(p)), []).append(i)
        out = [0.0] * len(prompts)
        for (u, prompt), idx in groups.items():  # one forward pass per user and prompt
            mean, std = self.scorer.score(self.belief(u), prompt,
                                          [_text(completions[i]) for i in idx])
            for j, i in enumerate(idx):
                out[i] = float(mean[j] - self.uncertainty * std[j])
        return out
