"""Reward learning on maze preferences, the three reward scalings, and relabeling.

Scalings of a learned r(s, z):
  none    r(s, z) as learned;
  minmax  (r(s, z) - min_s r) / (max_s r - min_s r) per latent z, over the offline states;
  spo     VPL-SPO: with the preference classifier f(s, s', z) = r(s, z) - r(s', z) (the
          Bradley-Terry decoder VPL is trained with), r_spo(s, z) = mean_n sigmoid(f(s, s'_n, z))
          over a fixed comparison set {s'_n} of offline states; it lies in [0, 1] for every z.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from vpl.control.maze import Maze
from vpl.control.offline import MazeData
from vpl.data.contexts import first_contexts
from vpl.data.pairs import PairData, build_batch
from vpl.models import REGISTRY, RewardModel, build
from vpl.models.latent import LatentRewardModel
from vpl.models.presets import PAPER_VPL
from vpl.train import TrainConfig, TrainResult, fit, seed_everything

log = logging.getLogger(__name__)

SCALINGS = ("none", "minmax", "spo")
VPL_VARIANTS = ("concat", "default")
# Reward choice -> (registry model name, default scaling).
REWARDS: dict[str, tuple[str | None, str]] = {
    "btl": ("btl", "minmax"),
    "dpl": ("dpl-meanvar", "minmax"),
    "vpl": ("vpl", "none"),
    "vpl-minmax": ("vpl", "minmax"),
    "vpl-spo": ("vpl", "spo"),
    "oracle": (None, "none"),
}


@dataclass(frozen=True)
class RewardConfig:
    """Reward-model training for the maze."""

    epochs: int = 200
    """Maximum training epochs (an epoch is only ~25 steps with the default data)."""
    patience: int = 30
    """Early-stopping patience (epochs without better validation accuracy)."""
    lr: float = 3e-3
    """Learning rate."""
    hidden: int = 128
    """Hidden width of the reward MLPs."""
    layers: int = 2
    """Hidden layers of the reward MLPs (and of VPL's reward features and pair encoder). The
    maze's state features need a nonlinear reward, whatever the text default of VPL is."""
    latent_dim: int = 8
    """VPL latent size."""
    beta: float = 0.01
    """VPL KL weight."""
    context_size: int = 8
    """K: labeled queries per user given to the encoder (= test users' query count)."""
    spo_comparisons: int = 256
    """Size of the fixed comparison set of VPL-SPO."""
    vpl_variant: str = "default"
    """VPL configuration: `default` (the library's VPL defaults: z sets a per-user head on
    reward features) or `concat` (z concatenated to the state features, attention pooling,
    target-only likelihood: the paper's setup). `default` tells more goals apart, trains
    faster and makes active query selection cheaper (no MLP pass per latent particle);
    evidence: docs/models.md."""
    inference: str = "bank"
    """How VPL infers a user's latent (`VPLConfig.inference`): `bank` (the training users'
    latents reweighted by the likelihood of the user's queries, then the decoder refinement)
    or `amortized` (the encoder's posterior mean, the paper's)."""
    label_noise: float = 0.05
    """VPL's label-noise (lapse) rate, `VPLConfig.label_noise`: the probability that a label
    is flipped whatever the reward difference. 0.05 is the simulated users' flip rate
    (`MazeDataConfig.noise`). With plain Bradley-Terry (0) one flipped label on a pair of
    distant states outweighs several correct ones, and a user is misidentified (evidence:
    docs/models.md)."""
    seed: int = 0
    """Training seed."""


def model_name(reward: str) -> str:
    """Registry name of the model behind a reward choice; clear error if it is not registered."""
    if reward not in REWARDS:
        raise ValueError(f"unknown reward {reward!r}; choose from {sorted(REWARDS)}")
    name = REWARDS[reward][0]
    if name is None:
        raise ValueError("the oracle has no learned reward model")
    if name not in REGISTRY:
        raise ValueError(f"reward {reward!r} needs model {name!r}, which is not registered in "
                         f"vpl.models.REGISTRY (available: {', '.join(sorted(REGISTRY))})")
    return name


def train_reward_model(reward: str, data: MazeData, cfg: RewardConfig,
                       *, progress: bool = False) -> tuple[RewardModel, TrainResult]:
    """Train the model behind `reward` on the train users, early-stopped on the val users."""
    name = model_name(reward)
    overrides: dict[str, object] = {"hidden": cfg.hidden, "layers": cfg.layers}
    if name == "vpl":
        if cfg.vpl_variant not in VPL_VARIANTS:
            raise ValueError(f"unknown vpl_variant {cfg.vpl_variant!r}; choose from "
                             f"{VPL_VARIANTS}")
        overrides.update(latent_dim=cfg.latent_dim, beta=cfg.beta, inference=cfg.inference,
                         label_noise=cfg.label_noise)
        if cfg.vpl_variant == "concat":
            overrides.update(PAPER_VPL)
    seed_everything(cfg.seed)  # the weight initialization is part of the seeded run
    model = build(name, data.maze.feature_dim, **overrides)
    tc = TrainConfig(epochs=cfg.epochs, patience=cfg.patience, lr=cfg.lr,
                     context_size=cfg.context_size, targets_per_user=8, users_per_batch=32,
                     seed=cfg.seed)
    result = fit(model, data.pairs("train"), data.pairs("val"), tc, progress=progress)
    log.info("%s: val accuracy %.3f in %.1fs", name, result.best_val_accuracy, result.seconds)
    return model, result


@torch.no_grad()
def posterior_means(model: RewardModel, pairs: PairData, k: int) -> np.ndarray:
    """Posterior mean z (U, Z) of each user from their first k labeled pairs."""
    users, ctx = first_contexts(pairs, k)
    batch = build_batch(pairs, ctx[:, :1], pairs, ctx)
    model.eval()
    post = model.posterior(batch)
    if post is None:
        return np.zeros((len(users), 0), dtype=np.float32)
    return post.mean.numpy().astype(np.float32)


@torch.no_grad()
def raw_reward(model: RewardModel, feats: np.ndarray, z: np.ndarray | None,
               chunk: int = 65536) -> np.ndarray:
    """Learned r(s, z) (N,) of state features (N, D); z (Z,) or None for models without one."""
    model.eval()
    out = []
    for s in range(0, len(feats), chunk):
        x = torch.from_numpy(feats[s : s + chunk])
        if isinstance(model, LatentRewardModel):
            zt = torch.from_numpy(np.asarray(z, dtype=np.float32))[None]
            r = model.reward(x[None], zt)[0]
        else:
            r = model.reward(x)
        if isinstance(r, tuple | list):  # (mean, variance)-style heads: use the mean
            r = r[0]
        out.append(r.reshape(len(x), -1)[:, 0].float().numpy())
    return np.concatenate(out)


def spo_reward(r_s: np.ndarray, r_ref: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """mean_n sigmoid(r_s - r_ref[n]) for each state (N,); in [0, 1]."""
    ref = torch.from_numpy(np.asarray(r_ref, dtype=np.float32))
    out = []
    for s in range(0, len(r_s), chunk):
        x = torch.from_numpy(np.asarray(r_s[s : s + chunk], dtype=np.float32))
        out.append(torch.sigmoid(x[:, None] - ref[None]).mean(1).numpy())  # (n, M) -> (n,)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


class LearnedReward:
    """A learned reward with a scaling, evaluated on positions for a given latent."""

    def __init__(self, model: RewardModel, maze: Maze, scaling: str, reference: np.ndarray,
                 comparisons: int = 256, seed: int = 0) -> None:
        if scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {scaling!r}; choose from {SCALINGS}")
        self.model, self.maze, self.scaling = model, maze, scaling
        self.reference = np.asarray(reference, dtype=np.float32).reshape(-1, 2)
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(self.reference), size=min(comparisons, len(self.reference)),
                          replace=False)
        self.comparison_feats = maze.features(self.reference[pick])
        self._ref_feats: np.ndarray | None = None

    def __call__(self, pos: np.ndarray, z: np.ndarray | None) -> np.ndarray:
        """Scaled reward (N,) of positions (N, 2) for latent z."""
        r = raw_reward(self.model, self.maze.features(pos), z)
        if self.scaling == "none":
            return r.astype(np.float32)
        if self.scaling == "spo":
            return spo_reward(r, raw_reward(self.model, self.comparison_feats, z))
        if self._ref_feats is None:
            self._ref_feats = self.maze.features(self.reference)
        ref = raw_reward(self.model, self._ref_feats, z)
        lo, hi = float(ref.min()), float(ref.max())
        return ((r - lo) / max(hi - lo, 1e-8)).astype(np.float32)


def oracle_reward(maze: Maze, pos: np.ndarray, goal: int) -> np.ndarray:
    """The true reward of goal `goal`'s users."""
    return maze.true_reward(pos, goal)
