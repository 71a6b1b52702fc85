"""The interface every reward model implements, and the name -> class registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from vpl.data.pairs import ContextBatch, PairData
from vpl.losses import bradley_terry_nll

REGISTRY: dict[str, type[RewardModel]] = {}


def register(name: str):
    """Class decorator adding a model to the registry under `name`."""

    def deco(cls: type[RewardModel]) -> type[RewardModel]:
        if name in REGISTRY:
            raise ValueError(f"model name {name!r} registered twice")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco


@dataclass(frozen=True)
class LossOutput:
    """Training loss with the logits it came from and scalar diagnostics."""

    loss: torch.Tensor
    logits: torch.Tensor  # (B, T)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Posterior:
    """Gaussian q(z | context): mean and log-variance, each (B, Z)."""

    mean: torch.Tensor
    logvar: torch.Tensor


class RewardModel(nn.Module):
    """A reward model scoring items, optionally conditioned on a user's context.

    Subclasses define a frozen-able `Config` dataclass, `logits` and, if they need more than
    the Bradley-Terry likelihood, `loss`.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    uses_context: ClassVar[bool] = False
    latent_dim: int = 0

    def __init__(self, input_dim: int, config: Any) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.config = config

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        """Log-odds (B, T) that each target's chosen beats its rejected."""
        raise NotImplementedError

    @property
    def reads_distinct_contexts(self) -> bool:
        """Whether scoring now reads a batch's distinct context pairs (`ContextBatch.
        ctx_distinct`), so evaluation should build them; by default it does not."""
        return False

    def reward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Reward of items x (..., D); a model without a user latent ignores z."""
        raise NotImplementedError

    def loss(self, batch: ContextBatch, *, kl_weight: float = 1.0) -> LossOutput:
        """Training loss on a batch (default: Bradley-Terry NLL over real targets)."""
        logits = self.logits(batch, sample=True)
        nll = bradley_terry_nll(logits, batch.target_mask)
        return LossOutput(nll, logits, {"nll": nll.item()})

    @classmethod
    def options_from_data(cls, data: PairData) -> dict[str, Any]:
        """Config options a model reads off its training data (e.g. the declared user types);
        `build_for` merges them under the caller's own options. Default: none."""
        return {}

    def bind(self, data: PairData) -> None:
        """Called before batches of `data` are scored or trained on; models that need per-user
        facts of a dataset (e.g. declared user types) read them here. Default: nothing."""

    def posterior(self, batch: ContextBatch) -> Posterior | None:
        """q(z | context) for each row of the batch; None for models without a latent
        (those with one implement `vpl.models.latent.LatentRewardModel`)."""
        return None

    def scorer(self, batch: ContextBatch) -> Callable[[], torch.Tensor]:
        """`predict(batch)` as a function, to call again after changing a setting that only
        shapes predictions (the bank's temperature, the item-effect strength) without
        changing the batch: a model may compute what such settings leave unchanged once, on
        this call. Default: each call predicts afresh."""
        return lambda: self.predict(batch)

    def config_dict(self) -> dict[str, Any]:
        """JSON-serializable description from which `build` recreates the model."""
        return {"model": self.name, "input_dim": self.input_dim,
                "config": dataclasses.asdict(self.config)}

    @torch.no_grad()
    def predict(self, batch: ContextBatch) -> torch.Tensor:
        """Deterministic log-odds (B, T) for evaluation (posterior mean for latent models)."""
        was = self.training
        self.eval()
        try:
            return self.logits(batch, sample=False)
        finally:
            self.train(was)


def build_for(name: str, data: PairData, **overrides: Any) -> RewardModel:
    """Instantiate a registered model for training on `data` (input size and data options)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return build(name, data.dim, **{**REGISTRY[name].options_from_data(data), **overrides})


def build(name: str, input_dim: int, **overrides: Any) -> RewardModel:
    """Instantiate a registered model with its default config updated by `overrides`."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name]
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"model {name!r} has no option(s) {sorted(unknown)}; "
                         f"options: {sorted(fields)}")
    return cls(input_dim, cls.Config(**overrides))
