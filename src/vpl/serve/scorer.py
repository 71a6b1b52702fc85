"""One trained run, loaded once per process, answering for users from their stored answers.

Texts become item vectors exactly as in training (the run's encoder, with the disk cache of
embeddings, its projection and item identity codes). A user's posterior comes from the
model's `particles` (`vpl.models.latent`): weighted latents, exact for a latent bank. It is
cached per user and answer version, so a new answer or another run invalidates it, and losing
the cache loses nothing (it is derived from the database).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vpl.active.acquisition import CandidatePool, candidate_logits, info_gain, reward_matrix
from vpl.checkpoint import WEIGHTS, load_model
from vpl.embed import DEFAULT_ENCODER
from vpl.embed.encoder import hash_text, item_vectors, split_response
from vpl.embed.identity import IDENTITY, ItemIdentity
from vpl.embed.projection import PROJECTION, Projection
from vpl.experiments.prepare import get_encoder, read_run
from vpl.models.latent import LatentRewardModel


@dataclass(frozen=True)
class Belief:
    """A user's posterior as weighted latents (S, Z) and weights (S,)."""

    z: torch.Tensor
    w: torch.Tensor
    n_answers: int

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Weighted mean and standard deviation (Z,) of the latent."""
        mean = self.w @ self.z
        var = self.w @ (self.z - mean) ** 2
        return mean.numpy(), var.clamp_min(0).sqrt().numpy()


class RunScorer:
    """Scores responses and queries for users of a trained run (`vpl train --out RUN_DIR`);
    a run without a user latent scores every user alike.
    Keeps the posteriors of up to `cache_users` (user, answer version) pairs and the vectors of
    up to `cache_items` items in memory (least recently used dropped first)."""

    def __init__(self, run_dir: str | os.PathLike, *, samples: int = 64,
                 max_particles: int = 256, cache_users: int = 10_000,
                 cache_items: int = 50_000) -> None:
        self.run_dir = Path(run_dir)
        run = read_run(self.run_dir)
        self.model = load_model(self.run_dir)
        self.personal = isinstance(self.model, LatentRewardModel)
        """Whether the model has a user latent; without one (BTL, DPL) every user gets the
        population's reward and there is nothing to ask."""
        self.encoder = get_encoder(run.get("embed_model", DEFAULT_ENCODER), progress=False)
        _ = self.encoder.model  # loaded now, not by the first request that brings a new text
        proj, ident = self.run_dir / PROJECTION, self.run_dir / IDENTITY
        self.projection = Projection.load(proj) if proj.exists() else None
        self.identity = ItemIdentity.load(ident) if ident.exists() else None
        self.run_id = _fingerprint(self.run_dir / WEIGHTS)
        self.samples, self.max_particles = samples, max_particles
        self._lock = threading.Lock()  # torch modules and the encoder are used one at a time
        self._beliefs: OrderedDict[tuple[str, int], Belief] = OrderedDict()
        self._cache_users = cache_users
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_items = cache_items

    def vectors(self, items: Sequence[tuple[str, str]]) -> torch.Tensor:
        """(N, D) item vectors of (prompt, response) items, as the run's model takes them:
        from this process's memory for items seen recently, else embedded (through the disk
        cache of embeddings) and projected."""
        if not items:  # a user with no answers yet
            return torch.zeros((0, self.model.input_dim))
        with self._lock:
            new = [it for it in dict.fromkeys(items) if it not in self._items]
            if new:
                for it, v in zip(new, self._embed(new), strict=True):
                    self._items[it] = v
            rows = []
            for it in items:
                self._items.move_to_end(it)
                rows.append(self._items[it])
            while len(self._items) > self._cache_items:
                self._items.popitem(last=False)
        return torch.from_numpy(np.stack(rows))

    def _embed(self, items: list[tuple[str, str]]) -> np.ndarray:
        x = item_vectors(items, self.encoder)
        if self.projection is not None:
            x = self.projection(x)
        if self.identity is not None:
            codes = self.identity.codes_of(np.array([hash_text(r) for _, r in items],
                                                    dtype=np.int64))
            x = np.concatenate([x, codes], axis=1)
        return np.ascontiguousarray(x, dtype=np.float32)

    def cached(self, user: str, version: int) -> Belief | None:
        """The cached posterior of `user` at answer `version`, if there is one."""
        with self._lock:
            out = self._beliefs.get((user, version))
            if out is not None:
                self._beliefs.move_to_end((user, version))
            return out

    def belief(self, user: str, version: int, prompts: Sequence[str], chosen: Sequence[str],
               rejected: Sequence[str]) -> Belief:
        """The posterior of `user` given their answers (cached by `version`, which changes with
        every new answer)."""
        key = (user, version)
        found = self.cached(user, version)
        if found is not None:
            return found
        if not self.personal:
            return Belief(torch.zeros(1, 0), torch.ones(1), len(prompts))
        split = [split_response(p, c, r) for p, c, r in zip(prompts, chosen, rejected,
                                                             strict=True)]
        vec = self.vectors([(p, c) for p, c, _ in split] + [(p, r) for p, _, r in split])
        n = len(split)
        gen = torch.Generator().manual_seed(0)  # the same answers give the same belief
        with self._lock, torch.no_grad():
            z, w = self.model.particles(vec[:n], vec[n:], self.samples, gen,
                                        max_particles=self.max_particles)
            out = Belief(z.detach(), w.detach(), n)
            self._beliefs[key] = out
            while len(self._beliefs) > self._cache_users:
                self._beliefs.popitem(last=False)
        return out

    def forget(self, user: str) -> None:
        """Drop a user's cached beliefs."""
        with self._lock:
            for key in [k for k in self._beliefs if k[0] == user]:
                del self._beliefs[key]

    def score(self, belief: Belief, prompt: str, responses: Sequence[str]
              ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation (R,) of the reward of each response, all
        responses in one forward pass."""
        x = self.vectors([(prompt, r) for r in responses])
        with self._lock, torch.no_grad():
            r = reward_matrix(self.model, x, belief.z) if self.personal else \
                self.model.reward(x).unsqueeze(0)  # (S, R)
        mean = belief.w @ r
        std = (belief.w @ (r - mean) ** 2).clamp_min(0).sqrt()
        return mean.numpy(), std.numpy()

    def next_query(self, belief: Belief, candidates: Sequence[tuple[str, str, str]]
                   ) -> tuple[int, float]:
        """The candidate (prompt, a, b) whose answer tells most about the user (BALD info
        gain, nats) and its gain."""
        if not self.personal:
            raise ValueError(f"{self.run_dir}: model {self.model.name!r} has no user latent, so "
                             "no answer tells anything about a user")
        x = self.vectors([(p, a) for p, a, _ in candidates] + [(p, b) for p, _, b in candidates])
        n = len(candidates)
        pool = CandidatePool.from_vectors(x[:n], x[n:])
        with self._lock, torch.no_grad():
            gain = info_gain(candidate_logits(self.model, pool, belief.z), belief.w)  # (N,)
        i = int(torch.argmax(gain))
        return i, float(gain[i])


def _fingerprint(path: Path) -> str:
    """A short id of a weights file (size and content hash)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]
