"""Latent-conditioned offline RL: d3rlpy IQL on the maze data with z appended to observations.

Each offline transition (s, a, s') is used under every latent z_l of a small set, with the
reward r_l = R(s', z_l) relabeled under that latent; the policy sees [features(s), z_l]. The
IQL update is d3rlpy's; mini-batches are drawn by us from flat arrays instead of d3rlpy's
replay buffer because its per-transition picker cost 1.4 ms of a 5.1 ms step on 2 CPU cores
(measured, 128x128 networks, batch 256), and because sampling (row, latent) index pairs avoids
materializing one copy of the data per latent.

Two departures from a plain one-step IQL, both measured on the 2-goal maze (README): targets
bootstrap after `n_step` (5) steps of the trajectory, so each backup carries values 5 steps
and they cross the small local maxima a learned reward has on the way to a goal sooner; the
actor's learning rate follows a cosine schedule to zero, which makes the final policy as good
as the best intermediate one instead of swinging between evaluations.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from vpl.control.maze import Maze
from vpl.data.io import atomic_write_text

log = logging.getLogger(__name__)


LATENT_SCALES = ("global", "per-dim", "whiten")


@dataclass(frozen=True)
class IQLSettings:
    """Implicit Q-Learning hyperparameters (d3rlpy's IQLConfig) and training budget."""

    steps: int = 20000
    """Gradient steps."""
    batch_size: int = 256
    """Transitions per step."""
    hidden: int = 0
    """Width of the two hidden layers of every network; 0 picks it from the number of goals
    (`for_goals`): 64 per goal, at least 128. One network must hold every user's value
    function, so more goals need wider networks (evidence: docs/models.md)."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    n_step: int = 5
    """Bootstrapping horizon: each transition's target sums the next `n_step` rewards of its
    trajectory (fewer at the end of a trajectory) and bootstraps from the state reached then,
    discounted by gamma ** steps. Values then travel n times as far per update, which matters
    when a learned reward has shallow local maxima on the way to the goal."""
    expectile: float = 0.9
    """Expectile tau of the value regression."""
    weight_temp: float = 10.0
    """Inverse temperature beta of advantage-weighted regression."""
    lr: float = 3e-4
    """Actor and critic learning rate."""
    actor_cosine: bool = True
    """Anneal the actor's learning rate to zero over `steps` with a cosine schedule, as the IQL
    paper does; without it the final policy's success swings between evaluations."""
    latent_scale: str = "whiten"
    """How latents become the networks' input (`latent_projection`): `whiten` projects them
    onto their principal components with at least 2 % of the variance, each scaled to unit
    variance, and drops the rest (posterior noise); `global` divides every dimension by one
    common scale; `per-dim` standardizes each dimension, blowing the noise up to unit size.
    A goal whose latents differ from another's only along a weak direction is as far from it
    as any other goal after whitening (evidence: docs/models.md)."""
    eval_every: int = 2000
    """Steps between evaluations for the success-vs-steps curve (0: only at the end)."""
    seed: int = 0
    """Seed of torch and batch sampling."""
    threads: int = 1
    """Torch CPU threads during training (small networks run best single-threaded)."""

    def for_goals(self, goals: int) -> IQLSettings:
        """These settings with `hidden` resolved for a maze of `goals` goals (kept if set)."""
        if self.hidden < 0:
            raise ValueError(f"IQL hidden width must be >= 0 (0: from the goals), got {self.hidden}")
        if self.hidden > 0:
            return self
        return dataclasses.replace(self, hidden=max(128, 64 * goals))


class LatentPolicy:
    """An IQL policy on [features(s), (z - z_shift) @ z_proj]; `act` takes cell-unit positions.

    `z_proj` (Z, Z') maps centred latents to the networks' latent input (`latent_projection`):
    a diagonal of inverse scales (`global`, `per-dim`) or a whitening projection onto the
    latents' principal components (`whiten`, Z' <= Z); the identity if None.
    """

    def __init__(self, algo: Any, maze: Maze, latent_dim: int, z_shift: np.ndarray | None = None,
                 z_proj: np.ndarray | None = None) -> None:
        self.algo, self.maze, self.latent_dim = algo, maze, latent_dim
        self.z_shift = np.zeros(latent_dim, np.float32) if z_shift is None else \
            np.asarray(z_shift, np.float32)
        proj = np.eye(latent_dim) if z_proj is None else np.asarray(z_proj)
        self.z_proj = proj.astype(np.float32).reshape(latent_dim, -1) if latent_dim \
            else np.zeros((0, 0), np.float32)

    def latent_input(self, z: np.ndarray) -> np.ndarray:
        """Centred, scaled (or whitened) latents (N, Z') as the networks see them."""
        return ((np.asarray(z, np.float32) - self.z_shift) @ self.z_proj).astype(np.float32)

    def act(self, pos: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Deterministic actions (N, 2) for positions (N, 2) and latents (N, Z)."""
        x = self.maze.features(pos)
        if self.latent_dim:
            zz = self.latent_input(np.asarray(z, dtype=np.float32).reshape(len(x), -1))
            x = np.concatenate([x, zz], axis=1)
        return np.asarray(self.algo.predict(x.astype(np.float32)), dtype=np.float32)


def latent_projection(raw: np.ndarray, how: str,
                      min_variance: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Shift (Z,) and projection (Z, Z') that turn latents (M, Z) into the networks' input.

    global: divide by one common scale (the root mean variance); per-dim: standardize each
    dimension; whiten: project onto the principal components that hold at least `min_variance`
    of the total variance and scale each to unit variance (the rest, posterior noise, is
    dropped). A single latent (M = 1) is passed through unchanged.
    """
    raw = np.asarray(raw, dtype=np.float64)
    m, z_dim = raw.shape
    if how not in LATENT_SCALES:
        raise ValueError(f"unknown latent_scale {how!r}; choose from {', '.join(LATENT_SCALES)}")
    if m <= 1:
        return np.zeros(z_dim, np.float32), np.eye(z_dim, dtype=np.float32)
    shift = raw.mean(0)
    if how == "per-dim":
        proj = np.diag(1.0 / (raw.std(0) + 1e-3))
    elif how == "global":
        proj = np.eye(z_dim) / (np.sqrt(raw.var(0).mean()) + 1e-3)
    else:
        ev, vec = np.linalg.eigh(np.cov(raw - shift, rowvar=False).reshape(z_dim, z_dim))
        ev, vec = ev[::-1], vec[:, ::-1]  # largest first
        keep = ev >= min_variance * max(ev.sum(), 1e-12)
        keep[0] = True  # at least one component, even for identical latents
        proj = vec[:, keep] / np.sqrt(np.maximum(ev[keep], 1e-6))
    return shift.astype(np.float32), proj.astype(np.float32)


def _make_iql(obs_dim: int, s: IQLSettings) -> Any:
    import d3rlpy

    if s.hidden <= 0:
        raise ValueError(f"IQL hidden width must be positive, got {s.hidden}; resolve 0 with "
                         "IQLSettings.for_goals")
    enc = d3rlpy.models.VectorEncoderFactory(hidden_units=[s.hidden, s.hidden])
    schedule = (d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=max(s.steps, 1))
                if s.actor_cosine else None)
    cfg = d3rlpy.algos.IQLConfig(
        actor_optim_factory=d3rlpy.optimizers.AdamFactory(lr_scheduler_factory=schedule),
        batch_size=s.batch_size, gamma=s.gamma, tau=s.tau, expectile=s.expectile,
        weight_temp=s.weight_temp, actor_learning_rate=s.lr, critic_learning_rate=s.lr,
        actor_encoder_factory=enc, critic_encoder_factory=enc, value_encoder_factory=enc)
    algo = cfg.create(device="cpu:0")
    algo.create_impl((obs_dim,), 2)
    return algo


def n_step_returns(rewards: np.ndarray, n: int, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """n-step reward sums along trajectories, and each step's bootstrap horizon.

    rewards: (..., L), reward of step t of each trajectory. Returns sums (..., L) with
    sums[..., t] = sum_{k < h_t} gamma^k rewards[..., t + k] and horizons h (L,) with
    h_t = min(n, L - t): a target bootstraps from the state h_t steps later, discounted by
    gamma ** h_t (trajectories end without a terminal state, so the last steps use fewer rewards).
    """
    if n < 1:
        raise ValueError(f"n_step must be >= 1, got {n}")
    rewards = np.asarray(rewards, dtype=np.float32)
    length = rewards.shape[-1]
    t_idx = np.arange(length)
    horizon = np.minimum(n, length - t_idx)
    out = np.zeros_like(rewards)
    for k in range(n):
        valid = horizon > k
        out[..., valid] += np.float32(gamma**k) * rewards[..., t_idx[valid] + k]
    return out, horizon


def train_policy(maze: Maze, obs: np.ndarray, actions: np.ndarray, latents: np.ndarray,
                 rewards: np.ndarray, settings: IQLSettings,
                 callback: Callable[[LatentPolicy, int], None] | None = None,
                 *, progress: bool = True) -> LatentPolicy:
    """IQL on episodes obs (E, L+1, 2), actions (E, L, 2), relabeled under each latent.

    latents: (M, Z) (Z may be 0); rewards: (M, E, L), reward of the next state under latent m.
    `callback(policy, step)` runs every `eval_every` steps and at the end.
    """
    from d3rlpy.dataset import TransitionMiniBatch

    torch.manual_seed(settings.seed)
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    e, length = actions.shape[:2]
    feats = maze.features(obs.reshape(-1, 2)).reshape(e, length + 1, -1)  # (E, L+1, F)
    cur = np.ascontiguousarray(feats[:, :-1].reshape(e * length, -1))  # (N, F)
    rew, horizon = n_step_returns(np.reshape(rewards, (-1, e, length)), settings.n_step,
                                  settings.gamma)
    nxt = np.ascontiguousarray(feats[:, np.arange(length) + horizon].reshape(e * length, -1))
    interval = np.tile(horizon, e).astype(np.float32)[:, None]  # (N, 1)
    act = actions.reshape(e * length, 2).astype(np.float32)
    raw = np.asarray(latents, dtype=np.float32)  # (M, Z)
    rew = rew.reshape(len(raw), e * length)  # (M, N)
    n, m, z_dim = len(cur), len(raw), raw.shape[1]
    # latents are centred and scaled so the networks see O(1) inputs whatever the scale of
    # the encoder's posterior means
    shift, proj = latent_projection(raw, settings.latent_scale)
    algo = _make_iql(cur.shape[1] + proj.shape[1], settings)
    policy = LatentPolicy(algo, maze, z_dim, shift, proj)
    lat = policy.latent_input(raw)
    b = settings.batch_size
    zeros = np.zeros((b, 1), dtype=np.float32)
    for step in tqdm(range(1, settings.steps + 1), desc="IQL", disable=not progress, leave=False):
        i = rng.integers(0, n, b)
        j = rng.integers(0, m, b)
        zb = lat[j]  # (B, Z)
        batch = TransitionMiniBatch(
            observations=np.concatenate([cur[i], zb], axis=1),
            actions=act[i], rewards=rew[j, i][:, None],
            next_observations=np.concatenate([nxt[i], zb], axis=1),
            next_actions=act[i], terminals=zeros, intervals=interval[i], transitions=[])
        algo.update(batch)
        if callback is not None and (
                step == settings.steps or (settings.eval_every and step % settings.eval_every == 0)):
            callback(policy, step)
    return policy


def rollout(policy: Callable[[np.ndarray, np.ndarray], np.ndarray], maze: Maze, goal: int,
            starts: np.ndarray, z: np.ndarray, max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Batched episodes from starts (N, 2) with latents (N, Z); (success (N,), paths (N, T+1, 2)).

    An episode succeeds once it comes within `goal_radius` of the goal; it then stops moving.
    """
    pos = np.asarray(starts, dtype=np.float32).copy()
    done = maze.distance(pos, goal) <= maze.goal_radius
    paths = [pos.copy()]
    for _ in range(max_steps):
        a = policy(pos, z)
        new = maze.step_positions(pos, a)
        pos = np.where(done[:, None], pos, new)
        done |= maze.distance(pos, goal) <= maze.goal_radius
        paths.append(pos.copy())
        if done.all():
            break
    return done, np.stack(paths, axis=1)


def eval_starts(maze: Maze, goal: int, n: int, rng: np.random.Generator,
                min_dist: float = 3.0) -> np.ndarray:
    """n start positions (N, 2) at least `min_dist` cells (shortest path) from the goal."""
    out: list[np.ndarray] = []
    while sum(len(o) for o in out) < n:
        cand = maze.sample_free(4 * n, rng)
        out.append(cand[maze.distance(cand, goal) >= min_dist])
    return np.concatenate(out)[:n]


def _modules(algo: Any) -> dict[str, nn.Module]:
    mods = algo.impl.modules
    return {f.name: getattr(mods, f.name) for f in dataclasses.fields(mods)
            if isinstance(getattr(mods, f.name), nn.Module)}


def save_policy(policy: LatentPolicy, out: str | os.PathLike,
                extra: dict[str, Any] | None = None) -> Path:
    """Write `policy.safetensors` (all IQL networks) and `policy.json` (configs) into `out`."""
    from d3rlpy.base import LearnableConfigWithShape

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    algo = policy.algo
    state = {f"{k}.{name}": t.detach().cpu().contiguous().clone()
             for k, mod in _modules(algo).items() for name, t in mod.state_dict().items()}
    save_file(state, str(out / "policy.safetensors"))
    shape_cfg = LearnableConfigWithShape(observation_shape=algo.impl.observation_shape,
                                         action_size=algo.impl.action_size, config=algo.config)
    maze = policy.maze
    meta = {"d3rlpy": shape_cfg.serialize_to_dict(), "latent_dim": policy.latent_dim,
            "z_shift": policy.z_shift.tolist(), "z_proj": policy.z_proj.tolist(),
            "maze": {"free": maze.free.astype(int).tolist(), "goals": [list(g) for g in maze.goals],
                     "step_size": maze.step_size, "goal_radius": maze.goal_radius,
                     "rbf_width": maze.rbf_width},
            **(extra or {})}
    atomic_write_text(out / "policy.json", json.dumps(meta, indent=2))
    return out


def load_policy(path: str | os.PathLike) -> LatentPolicy:
    """Rebuild a policy saved by `save_policy` (safetensors weights; nothing is unpickled)."""
    from d3rlpy.base import LearnableConfigWithShape

    path = Path(path)
    meta_path = path / "policy.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: not found; is {path} a saved control policy?")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    algo = LearnableConfigWithShape.deserialize_from_dict(meta["d3rlpy"]).create("cpu:0")
    state = load_file(str(path / "policy.safetensors"))
    for k, mod in _modules(algo).items():
        prefix = f"{k}."
        mod.load_state_dict({n[len(prefix):]: t for n, t in state.items() if n.startswith(prefix)})
    mz = meta["maze"]
    maze = Maze(np.array(mz["free"], dtype=bool), [tuple(g) for g in mz["goals"]],
                step_size=mz["step_size"], goal_radius=mz["goal_radius"],
                rbf_width=mz["rbf_width"])
    # policies saved before the projection stored per-dimension scales instead
    proj = np.array(meta["z_proj"]) if "z_proj" in meta else np.diag(1.0 / np.array(meta["z_scale"]))
    return LatentPolicy(algo, maze, int(meta["latent_dim"]), np.array(meta["z_shift"]), proj)
