"""BTL: one reward model for everyone, trained with the Bradley-Terry likelihood."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vpl.data.pairs import ContextBatch
from vpl.models.base import RewardModel, register
from vpl.models.layers import mlp


@dataclass(frozen=True)
class BTLConfig:
    """Reward MLP r(x) on the item vector."""

    hidden: int = 256
    """Width of the hidden layers."""
    layers: int = 2
    """Number of hidden layers."""
    dropout: float = 0.0
    """Dropout after each hidden layer."""


@register("btl")
class BTL(RewardModel):
    """r(x) = MLP(x); P(chosen > rejected) = sigmoid(r(chosen) - r(rejected))."""

    Config = BTLConfig

    def __init__(self, input_dim: int, config: BTLConfig) -> None:
        super().__init__(input_dim, config)
        self.reward_net = mlp(input_dim, config.hidden, 1, config.layers, dropout=config.dropout,
                              out_bias=False)

    def reward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar reward of items x (..., D) -> (...); z is ignored."""
        return self.reward_net(x).squeeze(-1)

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        return self.reward(batch.chosen) - self.reward(batch.rejected)  # (B, T)
